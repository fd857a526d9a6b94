//! Readiness from a poller thread of our own, for runtimes that load Node-API addons without a
//! usable libuv (Bun's `uv_*` functions are panicking stubs; Deno's `uv_poll_start` fires once).
//!
//! One thread per process waits in epoll (Linux) or kqueue (macOS) for every watched descriptor
//! of every environment. Each registration is one-shot: once an event is handed over, the kernel
//! reports nothing more for that descriptor until the JavaScript thread re-arms it, which it does
//! after `Ready::ready` returned (so after the socket drained what it could) if the socket still
//! wants events. Readiness therefore stays level-triggered from the socket's point of view, and
//! the poller never spins on a descriptor JavaScript has not caught up with.
//!
//! Events cross to the JavaScript thread through one Node-API threadsafe function per
//! environment: the poller queues `(token, events)` pairs in the environment's inbox and calls
//! the function once per event where the runtime runs each call as a task of its own (Node, Bun),
//! or once per batch where it does not (Deno; each event then gets a `setImmediate` task), so that
//! a message handler's promise reactions always run before the next handler (see
//! `CHECKPOINT_BETWEEN_CALLS`).
//!
//! Every watcher has a token that is never reused; events are routed and delivered by token, not
//! by descriptor number. A descriptor closed (and its number reused by a new socket) while one of
//! its events is queued therefore never reaches the new socket: the old token is simply gone.
//!
//! Environment teardown (a worker exiting) uses a plain env cleanup hook that is never removed:
//! it releases the threadsafe function and takes the environment's descriptors out of the
//! poller. Nothing here removes a cleanup hook from inside that hook (Deno frees the hook's
//! memory itself after calling it).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use napi::sys;

use super::Ready;

/// What the kernel reported for one token.
#[derive(Clone, Copy)]
struct Event {
  token: u64,
  readable: bool,
  writable: bool,
  /// Error or hang-up: reported as whatever the watcher is interested in, so that the socket's
  /// own receive or send meets the condition and reports it as what it is.
  failed: bool,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod os {
  //! epoll with EPOLLONESHOT: a reported descriptor stays registered but disabled until `arm`.
  use std::os::fd::RawFd;

  use super::Event;

  pub struct Poll {
    epfd: RawFd,
  }

  fn mask(readable: bool, writable: bool) -> u32 {
    let mut events = libc::EPOLLONESHOT as u32;
    if readable {
      // RDHUP: a peer that shut down its side makes the socket readable (EOF to read).
      events |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
    }
    if writable {
      events |= libc::EPOLLOUT as u32;
    }
    events
  }

  fn last_errno() -> i32 {
    -std::io::Error::last_os_error()
      .raw_os_error()
      .unwrap_or(libc::EIO)
  }

  impl Poll {
    pub fn new() -> Result<Self, i32> {
      // SAFETY: plain system call.
      let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
      if epfd < 0 {
        return Err(last_errno());
      }
      Ok(Self { epfd })
    }

    fn control(&self, op: i32, fd: RawFd, token: u64, events: u32) -> Result<(), i32> {
      let mut event = libc::epoll_event { events, u64: token };
      // SAFETY: epfd is our epoll instance; event is a valid epoll_event.
      if unsafe { libc::epoll_ctl(self.epfd, op, fd, &mut event) } < 0 {
        return Err(last_errno());
      }
      Ok(())
    }

    /// Registers `fd`, disabled: `arm` enables it. EEXIST when it is already registered.
    pub fn add(&self, fd: RawFd, token: u64) -> Result<(), i32> {
      self.control(libc::EPOLL_CTL_ADD, fd, token, mask(false, false))
    }

    /// Enables one report of the given events (or disables the descriptor when there are none).
    pub fn arm(&self, fd: RawFd, token: u64, readable: bool, writable: bool) -> Result<(), i32> {
      self.control(libc::EPOLL_CTL_MOD, fd, token, mask(readable, writable))
    }

    pub fn remove(&self, fd: RawFd) {
      // Fails only when fd is no longer registered (or no longer open): nothing to undo then.
      let _ = self.control(libc::EPOLL_CTL_DEL, fd, 0, 0);
    }

    /// Blocks until something is ready; appends what was reported.
    pub fn wait(&self, out: &mut Vec<Event>) {
      const CAPACITY: usize = 256;
      let mut events = [libc::epoll_event { events: 0, u64: 0 }; CAPACITY];
      // SAFETY: the buffer holds CAPACITY events.
      let count = unsafe { libc::epoll_wait(self.epfd, events.as_mut_ptr(), CAPACITY as i32, -1) };
      // EINTR (a signal) is the only failure of a valid epoll_wait: just wait again.
      for event in events.iter().take(count.max(0) as usize) {
        let bits = event.events;
        out.push(Event {
          token: event.u64,
          readable: bits & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 != 0,
          writable: bits & libc::EPOLLOUT as u32 != 0,
          failed: bits & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0,
        });
      }
    }
  }
}

#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
mod os {
  //! kqueue with EV_DISPATCH: a reported filter stays registered but disabled until `arm`
  //! enables it again. (Compile-checked on macOS only by CI; written to the same contract as
  //! the epoll version.)
  use std::os::fd::RawFd;

  use super::Event;

  pub struct Poll {
    kq: RawFd,
  }

  fn last_errno() -> i32 {
    -std::io::Error::last_os_error()
      .raw_os_error()
      .unwrap_or(libc::EIO)
  }

  fn change(fd: RawFd, filter: i16, flags: u16, token: u64) -> libc::kevent {
    // SAFETY: kevent is plain data; zero is a valid value for every field.
    let mut event: libc::kevent = unsafe { std::mem::zeroed() };
    event.ident = fd as libc::uintptr_t;
    event.filter = filter;
    event.flags = flags;
    event.udata = token as usize as *mut libc::c_void;
    event
  }

  impl Poll {
    pub fn new() -> Result<Self, i32> {
      // SAFETY: plain system call.
      let kq = unsafe { libc::kqueue() };
      if kq < 0 {
        return Err(last_errno());
      }
      // SAFETY: kq is ours.
      unsafe { libc::fcntl(kq, libc::F_SETFD, libc::FD_CLOEXEC) };
      Ok(Self { kq })
    }

    fn apply(&self, changes: &[libc::kevent]) -> Result<(), i32> {
      // SAFETY: changes is a valid array; no events are received.
      let status = unsafe {
        libc::kevent(
          self.kq,
          changes.as_ptr(),
          changes.len() as i32,
          std::ptr::null_mut(),
          0,
          std::ptr::null(),
        )
      };
      if status < 0 {
        return Err(last_errno());
      }
      Ok(())
    }

    /// Registers both filters of `fd`, disabled.
    pub fn add(&self, fd: RawFd, token: u64) -> Result<(), i32> {
      let flags = libc::EV_ADD | libc::EV_DISPATCH | libc::EV_DISABLE;
      self.apply(&[
        change(fd, libc::EVFILT_READ, flags, token),
        change(fd, libc::EVFILT_WRITE, flags, token),
      ])
    }

    pub fn arm(&self, fd: RawFd, token: u64, readable: bool, writable: bool) -> Result<(), i32> {
      let flag = |on: bool| {
        libc::EV_ADD
          | libc::EV_DISPATCH
          | if on {
            libc::EV_ENABLE
          } else {
            libc::EV_DISABLE
          }
      };
      self.apply(&[
        change(fd, libc::EVFILT_READ, flag(readable), token),
        change(fd, libc::EVFILT_WRITE, flag(writable), token),
      ])
    }

    pub fn remove(&self, fd: RawFd) {
      // Each fails only when the filter is already gone.
      let _ = self.apply(&[change(fd, libc::EVFILT_READ, libc::EV_DELETE, 0)]);
      let _ = self.apply(&[change(fd, libc::EVFILT_WRITE, libc::EV_DELETE, 0)]);
    }

    pub fn wait(&self, out: &mut Vec<Event>) {
      const CAPACITY: usize = 256;
      // SAFETY: kevent is plain data.
      let mut events: [libc::kevent; CAPACITY] = unsafe { std::mem::zeroed() };
      // SAFETY: the buffer holds CAPACITY events; no changes are submitted.
      let count = unsafe {
        libc::kevent(
          self.kq,
          std::ptr::null(),
          0,
          events.as_mut_ptr(),
          CAPACITY as i32,
          std::ptr::null(),
        )
      };
      for event in events.iter().take(count.max(0) as usize) {
        out.push(Event {
          token: event.udata as usize as u64,
          readable: event.filter == libc::EVFILT_READ,
          writable: event.filter == libc::EVFILT_WRITE,
          failed: event.flags & libc::EV_ERROR != 0,
        });
      }
    }
  }
}

/// One environment's inbox, shared by the poller thread and the environment's JavaScript thread.
struct Inbox {
  state: Mutex<InboxState>,
}

struct InboxState {
  events: VecDeque<Event>,
  /// Whether a call of the threadsafe function is on its way (then new events just queue).
  wake_pending: bool,
  /// The environment's threadsafe function; `None` once it is released or finalized, after
  /// which nothing may call it. Only ever called with this lock held, so taking it out under
  /// the lock is enough to make every later call impossible.
  function: Option<ThreadsafeFunction>,
}

#[derive(Clone, Copy)]
struct ThreadsafeFunction(sys::napi_threadsafe_function);
// SAFETY: a threadsafe function is made to be called from any thread; it is only called while the
// inbox lock proves it is not yet released.
unsafe impl Send for ThreadsafeFunction {}

struct Poller {
  poll: os::Poll,
  /// Where each live token's events go.
  routes: Mutex<HashMap<u64, Arc<Inbox>>>,
}

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

/// How readiness crosses to the JavaScript thread, by what the runtime does between two calls of
/// a threadsafe function:
/// - true (Node, Bun): each call is a task of its own, followed by a microtask checkpoint. One
///   call per event, delivered directly: the cheapest way, and a handler's promise reactions run
///   before the next event's handler, as with libuv.
/// - false (Deno): queued calls run back to back with no checkpoint between them. Events are
///   coalesced into one call and each is delivered in a `setImmediate` task of its own (see
///   [`defer`]), which costs a loop iteration per event.
static CHECKPOINT_BETWEEN_CALLS: AtomicBool = AtomicBool::new(true);

/// Tells how the runtime runs threadsafe-function calls (see [`CHECKPOINT_BETWEEN_CALLS`]); set
/// once, when the backend is chosen, before any watcher exists.
pub fn set_checkpoint_between_calls(checkpoint: bool) {
  CHECKPOINT_BETWEEN_CALLS.store(checkpoint, Ordering::Relaxed);
}

static POLLER: OnceLock<Result<Poller, i32>> = OnceLock::new();

/// The poller, started on first use.
fn poller() -> Result<&'static Poller, i32> {
  POLLER
    .get_or_init(|| {
      let poller = Poller {
        poll: os::Poll::new()?,
        routes: Mutex::new(HashMap::new()),
      };
      Ok(poller)
    })
    .as_ref()
    .map_err(|errno| *errno)
    .inspect(|poller| start_thread(poller))
}

/// Starts the poller thread once. It lives as long as the process: it holds no JavaScript state,
/// and blocks in the kernel when nothing is watched.
fn start_thread(poller: &'static Poller) {
  static STARTED: OnceLock<()> = OnceLock::new();
  STARTED.get_or_init(|| {
    std::thread::Builder::new()
      .name("sendmsg-poller".into())
      .spawn(move || run_poller(poller))
      .expect("could not start the sendmsg poller thread");
  });
}

fn run_poller(poller: &'static Poller) {
  let mut events = Vec::new();
  loop {
    events.clear();
    poller.poll.wait(&mut events);
    for event in &events {
      let inbox = poller.routes.lock().unwrap().get(&event.token).cloned();
      // No route: the watcher was closed after the kernel reported it. Drop the event.
      let Some(inbox) = inbox else { continue };
      let mut state = inbox.state.lock().unwrap();
      let Some(function) = state.function else {
        continue;
      };
      state.events.push_back(*event);
      // One call per event where each call is a task; otherwise one call per batch.
      if CHECKPOINT_BETWEEN_CALLS.load(Ordering::Relaxed) || !state.wake_pending {
        // SAFETY: the function is not released (we hold the lock that releasing takes first).
        let status = unsafe {
          sys::napi_call_threadsafe_function(
            function.0,
            std::ptr::null_mut(),
            sys::ThreadsafeFunctionCallMode::nonblocking,
          )
        };
        // napi_closing: the environment is going away, its events with it.
        state.wake_pending = status == sys::Status::napi_ok;
      }
    }
  }
}

/// The poller if it was ever started (environment teardown must not start it).
fn started_poller() -> Option<&'static Poller> {
  POLLER.get().and_then(|poller| poller.as_ref().ok())
}

/// Whether this process can run the poller.
pub fn available() -> bool {
  poller().is_ok()
}

/// One watched descriptor, as the JavaScript thread keeps it.
struct Entry {
  fd: RawFd,
  target: Rc<dyn Ready>,
  readable: bool,
  writable: bool,
  referenced: bool,
  /// Whether the kernel will report the next event (armed and not yet fired).
  armed: bool,
}

impl Entry {
  fn keeps_loop_alive(&self) -> bool {
    self.referenced && (self.readable || self.writable)
  }
}

/// One environment's watchers, on its JavaScript thread.
struct EnvState {
  env: sys::napi_env,
  inbox: Arc<Inbox>,
  /// Valid while `inbox` still holds it.
  function: sys::napi_threadsafe_function,
  watchers: HashMap<u64, Entry>,
  /// Watchers that keep the loop alive; the threadsafe function is referenced while non-zero.
  keeping_alive: usize,
  /// The environment's cleanup hook ran: nothing is polled or delivered any more.
  torn_down: bool,
  /// Work to run in later tasks (see [`defer`]), one per `setImmediate` callback.
  deferred: VecDeque<Box<dyn FnOnce()>>,
  /// The global `setImmediate`, and the native function it is given; kept for the environment's
  /// life (the environment frees them).
  set_immediate: sys::napi_ref,
  run_deferred: sys::napi_ref,
}

thread_local! {
  /// The environments of this thread (one, in practice).
  static ENVS: RefCell<Vec<EnvState>> = const { RefCell::new(Vec::new()) };
}

fn with_env<R>(env: sys::napi_env, f: impl FnOnce(&mut EnvState) -> R) -> Option<R> {
  ENVS.with_borrow_mut(|envs| envs.iter_mut().find(|state| state.env == env).map(f))
}

/// Watchers alive on this thread, over all its environments.
fn open_watchers() -> usize {
  ENVS.with_borrow(|envs| envs.iter().map(|state| state.watchers.len()).sum())
}

/// Runs `done` once every watcher of this thread is closed. Closing is synchronous here, so the
/// only watchers left are ones nobody closed yet; `done` runs at once when there are none, and
/// otherwise when the last one closes.
pub fn when_all_closed(done: Box<dyn FnOnce()>) {
  if open_watchers() == 0 {
    done();
  } else {
    ALL_CLOSED.set(Some(done));
  }
}

thread_local! {
  static ALL_CLOSED: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
}

fn set_tsfn_ref(state: &EnvState, referenced: bool) {
  if state.torn_down {
    return;
  }
  // SAFETY: env is live on this thread and the function is not released (not torn down).
  unsafe {
    if referenced {
      sys::napi_ref_threadsafe_function(state.env, state.function);
    } else {
      sys::napi_unref_threadsafe_function(state.env, state.function);
    }
  }
}

/// Applies a change of one entry's liveness to the environment's count and the function's ref.
fn update_keep_alive(state: &mut EnvState, before: bool, after: bool) {
  match (before, after) {
    (false, true) => {
      state.keeping_alive += 1;
      if state.keeping_alive == 1 {
        set_tsfn_ref(state, true);
      }
    }
    (true, false) => {
      state.keeping_alive -= 1;
      if state.keeping_alive == 0 {
        set_tsfn_ref(state, false);
      }
    }
    _ => {}
  }
}

/// Creates this environment's threadsafe function and cleanup hook, once.
fn ensure_env(env: sys::napi_env) -> Result<(), i32> {
  if with_env(env, |_| ()).is_some() {
    return Ok(());
  }
  let inbox = Arc::new(Inbox {
    state: Mutex::new(InboxState {
      events: VecDeque::new(),
      wake_pending: false,
      function: None,
    }),
  });
  let mut function = std::ptr::null_mut();
  // SAFETY: env is live on this thread; the strings and callbacks outlive the call; the inbox
  // reference handed to the finalizer is released there, once.
  unsafe {
    let mut name = std::ptr::null_mut();
    let label = "sendmsg.reactor";
    sys::napi_create_string_utf8(env, label.as_ptr().cast(), label.len() as isize, &mut name);
    let mut noop = std::ptr::null_mut();
    // A real (empty) function rather than NULL: not every runtime accepts a NULL function with a
    // call_js callback.
    sys::napi_create_function(
      env,
      label.as_ptr().cast(),
      label.len() as isize,
      Some(noop_callback),
      std::ptr::null_mut(),
      &mut noop,
    );
    let finalize_data = Arc::into_raw(Arc::clone(&inbox)) as *mut c_void;
    let status = sys::napi_create_threadsafe_function(
      env,
      noop,
      std::ptr::null_mut(),
      name,
      0,
      1,
      finalize_data,
      Some(on_function_finalized),
      Arc::as_ptr(&inbox) as *mut c_void,
      Some(deliver),
      &mut function,
    );
    if status != sys::Status::napi_ok {
      drop(Arc::from_raw(finalize_data as *const Inbox));
      return Err(-libc::ENOMEM);
    }
    // Idle until a referenced watcher has interest.
    sys::napi_unref_threadsafe_function(env, function);
    // Registered after the function, so that it runs before the runtime's own teardown of the
    // function (cleanup hooks run in reverse order), and never removed.
    sys::napi_add_env_cleanup_hook(env, Some(on_env_cleanup), env as *mut c_void);
  }
  inbox.state.lock().unwrap().function = Some(ThreadsafeFunction(function));
  let mut set_immediate = std::ptr::null_mut();
  let mut run_deferred_ref = std::ptr::null_mut();
  // SAFETY: env is live on this thread; the values belong to it. A runtime without a global
  // setImmediate leaves the reference null, and `defer` then reports failure.
  unsafe {
    let mut global = std::ptr::null_mut();
    let mut function_value = std::ptr::null_mut();
    sys::napi_get_global(env, &mut global);
    if sys::napi_get_named_property(env, global, c"setImmediate".as_ptr(), &mut function_value)
      == sys::Status::napi_ok
    {
      sys::napi_create_reference(env, function_value, 1, &mut set_immediate);
    }
    let name = "sendmsgDeferred";
    let mut runner = std::ptr::null_mut();
    if sys::napi_create_function(
      env,
      name.as_ptr().cast(),
      name.len() as isize,
      Some(run_deferred),
      std::ptr::null_mut(),
      &mut runner,
    ) == sys::Status::napi_ok
    {
      sys::napi_create_reference(env, runner, 1, &mut run_deferred_ref);
    }
  }
  let run_deferred = run_deferred_ref;
  ENVS.with_borrow_mut(|envs| {
    envs.push(EnvState {
      env,
      inbox,
      function,
      watchers: HashMap::new(),
      keeping_alive: 0,
      torn_down: false,
      deferred: VecDeque::new(),
      set_immediate,
      run_deferred,
    })
  });
  Ok(())
}

unsafe extern "C" fn noop_callback(
  _env: sys::napi_env,
  _info: sys::napi_callback_info,
) -> sys::napi_value {
  std::ptr::null_mut()
}

/// The runtime is done with the threadsafe function: nothing may call it any more.
unsafe extern "C" fn on_function_finalized(
  _env: sys::napi_env,
  data: *mut c_void,
  _hint: *mut c_void,
) {
  // SAFETY: the reference made for the finalizer in `ensure_env`, released once here.
  let inbox = unsafe { Arc::from_raw(data as *const Inbox) };
  inbox.state.lock().unwrap().function = None;
}

/// Environment teardown: stop polling its descriptors and release its threadsafe function.
/// Watchers still open stay listed until closed (the sockets' own teardown closes them), but
/// nothing is delivered to them any more.
unsafe extern "C" fn on_env_cleanup(arg: *mut c_void) {
  let env = arg as sys::napi_env;
  let (function, deferred) = with_env(env, |state| {
    state.torn_down = true;
    if let Some(poller) = started_poller() {
      for (token, entry) in &state.watchers {
        poller.routes.lock().unwrap().remove(token);
        poller.poll.remove(entry.fd);
      }
    }
    let function = state.inbox.state.lock().unwrap().function.take();
    (function, std::mem::take(&mut state.deferred))
  })
  .unzip();
  let function = function.flatten();
  // Never run: they would call into an environment that is going away. Dropped outside the
  // borrow of the thread's state, as what they hold may run code when dropped.
  drop(deferred);
  if let Some(function) = function {
    // SAFETY: taken out of the inbox above, so released exactly once and never called again.
    unsafe {
      sys::napi_release_threadsafe_function(function.0, sys::ThreadsafeFunctionReleaseMode::release)
    };
  }
  ENVS
    .with_borrow_mut(|envs| envs.retain(|state| !(state.env == env && state.watchers.is_empty())));
}

/// Runs `work` on this JavaScript thread in a later task of `env`'s event loop: after the current
/// task, its `process.nextTick` callbacks and its microtasks (promise reactions) have all run.
/// Each deferred piece of work gets a task of its own, in order. Must be called on the
/// environment's JavaScript thread (inside a handle scope, as every caller here is).
///
/// Why it exists: with the poller thread, readiness arrives in a threadsafe function's call, and
/// every runtime runs such a call as one task: microtasks queued by a message handler run only
/// after the whole call returns, not between the `napi_make_callback` calls made inside it. Code
/// that must act after a handler's microtasks (closing the descriptors nobody took once an
/// `await` had its chance) defers that action with this.
///
/// A task is a `setImmediate` callback: Node, Bun and Deno all run a microtask checkpoint between
/// immediates. (Further calls of the threadsafe function are not enough: Deno runs several queued
/// calls back to back with no checkpoint between them.) Work still queued when the environment is
/// torn down is dropped without running.
pub fn defer(env: sys::napi_env, work: Box<dyn FnOnce()>) -> Result<(), i32> {
  ensure_env(env)?;
  let refs = with_env(env, |state| {
    if state.torn_down {
      return None;
    }
    state.deferred.push_back(work);
    Some((state.set_immediate, state.run_deferred))
  })
  .flatten()
  .ok_or(-libc::ECANCELED)?;
  // SAFETY: env is live on this thread; both references were made in `ensure_env` and are kept
  // for the environment's life; every value used belongs to env.
  let scheduled = unsafe {
    let mut set_immediate = std::ptr::null_mut();
    let mut runner = std::ptr::null_mut();
    let mut global = std::ptr::null_mut();
    let mut result = std::ptr::null_mut();
    sys::napi_get_reference_value(env, refs.0, &mut set_immediate);
    sys::napi_get_reference_value(env, refs.1, &mut runner);
    sys::napi_get_global(env, &mut global);
    !set_immediate.is_null()
      && !runner.is_null()
      && sys::napi_call_function(env, global, set_immediate, 1, &runner, &mut result)
        == sys::Status::napi_ok
  };
  if scheduled {
    Ok(())
  } else {
    with_env(env, |state| state.deferred.pop_back());
    Err(-libc::ECANCELED)
  }
}

/// The `setImmediate` callback of [`defer`]: runs the oldest piece of deferred work.
unsafe extern "C" fn run_deferred(
  env: sys::napi_env,
  _info: sys::napi_callback_info,
) -> sys::napi_value {
  if let Some(work) = with_env(env, |state| state.deferred.pop_front()).flatten() {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    if outcome.is_err() {
      eprintln!("sendmsg: internal error in deferred work (a bug: please report it)");
    }
  }
  std::ptr::null_mut()
}

/// The threadsafe function's call: hands the queued events to their watchers.
unsafe extern "C" fn deliver(
  env: sys::napi_env,
  _js_callback: sys::napi_value,
  context: *mut c_void,
  _data: *mut c_void,
) {
  if env.is_null() {
    // The function is being torn down with calls still queued.
    return;
  }
  // SAFETY: context is the inbox, kept alive by the finalizer's reference until after the
  // function's last call.
  let inbox = unsafe { &*(context as *const Inbox) };
  if CHECKPOINT_BETWEEN_CALLS.load(Ordering::Relaxed) {
    // One call per event: this call's event is the oldest queued.
    let event = inbox.state.lock().unwrap().events.pop_front();
    if let Some(event) = event {
      deliver_one(env, event);
    }
    return;
  }
  let events = {
    let mut state = inbox.state.lock().unwrap();
    state.wake_pending = false;
    std::mem::take(&mut state.events)
  };
  // Each readiness call in a task of its own, so that a handler's promise reactions run before
  // the next socket's (or the next message's) handler.
  let Some(_scope) = crate::js_call::HandleScope::open(env) else {
    return;
  };
  for event in events {
    if defer(env, Box::new(move || deliver_one(env, event))).is_err() {
      deliver_one(env, event);
    }
  }
}

fn deliver_one(env: sys::napi_env, event: Event) {
  // Look the token up afresh for each event: an earlier one may have closed this watcher.
  let call = with_env(env, |state| {
    if state.torn_down {
      return None;
    }
    let entry = state.watchers.get_mut(&event.token)?;
    entry.armed = false;
    let readable = entry.readable && (event.readable || event.failed);
    let writable = entry.writable && (event.writable || event.failed);
    Some((Rc::clone(&entry.target), readable, writable))
  })
  .flatten();
  let Some((target, readable, writable)) = call else {
    return;
  };
  if readable || writable {
    // A panic must not unwind into the runtime: report it and carry on.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
      target.ready(readable, writable, None)
    }));
    if outcome.is_err() {
      eprintln!(
        "sendmsg: internal error in a socket's readiness callback (a bug: please report it)"
      );
    }
  }
  // Drained what it could; if it still wants events and did not re-arm itself, re-arm.
  with_env(env, |state| {
    if state.torn_down {
      return;
    }
    if let Some(entry) = state.watchers.get_mut(&event.token) {
      if !entry.armed && (entry.readable || entry.writable) {
        if let Ok(poller) = poller() {
          entry.armed = poller
            .poll
            .arm(entry.fd, event.token, entry.readable, entry.writable)
            .is_ok();
        }
      }
    }
  });
}

/// A descriptor registered with the poller thread.
pub struct Watcher {
  env: sys::napi_env,
  token: u64,
}

impl Watcher {
  pub fn new(env: sys::napi_env, fd: i32, target: Rc<dyn Ready>) -> Result<Self, i32> {
    let poller = poller()?;
    ensure_env(env)?;
    let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
    let inbox = with_env(env, |state| {
      (!state.torn_down).then(|| Arc::clone(&state.inbox))
    })
    .flatten()
    .ok_or(-libc::ECANCELED)?;
    // Routed before it can fire (it is added disabled anyway).
    poller.routes.lock().unwrap().insert(token, inbox);
    if let Err(errno) = poller.poll.add(fd, token) {
      poller.routes.lock().unwrap().remove(&token);
      return Err(errno);
    }
    with_env(env, |state| {
      state.watchers.insert(
        token,
        Entry {
          fd,
          target,
          readable: false,
          writable: false,
          referenced: true,
          armed: false,
        },
      )
    });
    Ok(Self { env, token })
  }

  pub fn set_interest(&self, readable: bool, writable: bool) -> Result<(), i32> {
    let poller = poller()?;
    with_env(self.env, |state| {
      if state.torn_down {
        return Err(-libc::ECANCELED);
      }
      let entry = state
        .watchers
        .get_mut(&self.token)
        .expect("a watcher is listed until closed");
      let before = entry.keeps_loop_alive();
      let unchanged = entry.readable == readable && entry.writable == writable;
      entry.readable = readable;
      entry.writable = writable;
      let after = entry.keeps_loop_alive();
      // Armed for the same events already: the kernel will report them; nothing to do.
      if !(unchanged && (entry.armed || !(readable || writable))) {
        poller.poll.arm(entry.fd, self.token, readable, writable)?;
        entry.armed = readable || writable;
      }
      update_keep_alive(state, before, after);
      Ok(())
    })
    .unwrap_or(Err(-libc::ECANCELED))
  }

  pub fn set_ref(&self, referenced: bool) {
    with_env(self.env, |state| {
      let Some(entry) = state.watchers.get_mut(&self.token) else {
        return;
      };
      let before = entry.keeps_loop_alive();
      entry.referenced = referenced;
      let after = entry.keeps_loop_alive();
      update_keep_alive(state, before, after);
    });
  }

  /// Stops watching now: the descriptor may be closed as soon as this returns, and an event of
  /// it already on its way is dropped (its token is gone).
  pub fn close(self) {
    let poller = started_poller().expect("a watcher exists, so the poller does");
    let removed = with_env(self.env, |state| {
      let entry = state.watchers.remove(&self.token)?;
      if !state.torn_down {
        poller.routes.lock().unwrap().remove(&self.token);
        poller.poll.remove(entry.fd);
      }
      update_keep_alive(state, entry.keeps_loop_alive(), false);
      Some(entry)
    })
    .flatten();
    ENVS.with_borrow_mut(|envs| {
      envs.retain(|state| !(state.env == self.env && state.torn_down && state.watchers.is_empty()))
    });
    // The target (the socket) may hold the last reference to things that run code on drop:
    // dropped outside the borrow of the thread's state.
    drop(removed);
    if open_watchers() == 0 {
      if let Some(done) = ALL_CLOSED.take() {
        done();
      }
    }
  }
}
