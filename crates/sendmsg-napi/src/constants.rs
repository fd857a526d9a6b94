//! The running platform's values of the constants a caller needs. Each field is the OS's own
//! number; those the platform lacks are absent (undefined in JavaScript).

use napi_derive::napi;
use sendmsg_core::cmsg;

#[napi(object)]
pub struct PlatformConstants {
  #[napi(js_name = "SOL_SOCKET")]
  pub sol_socket: i32,
  #[napi(js_name = "SCM_RIGHTS")]
  pub scm_rights: i32,
  #[napi(js_name = "SCM_CREDENTIALS")]
  pub scm_credentials: Option<i32>,
  #[napi(js_name = "SCM_PIDFD")]
  pub scm_pidfd: Option<i32>,
  #[napi(js_name = "SO_PASSCRED")]
  pub so_passcred: Option<i32>,
  #[napi(js_name = "AF_UNIX")]
  pub af_unix: i32,
  #[napi(js_name = "AF_INET")]
  pub af_inet: i32,
  #[napi(js_name = "AF_INET6")]
  pub af_inet6: i32,
  #[napi(js_name = "SOCK_STREAM")]
  pub sock_stream: i32,
  #[napi(js_name = "SOCK_DGRAM")]
  pub sock_dgram: i32,
  #[napi(js_name = "SOCK_SEQPACKET")]
  pub sock_seqpacket: i32,
  #[napi(js_name = "MSG_OOB")]
  pub msg_oob: i32,
  #[napi(js_name = "MSG_PEEK")]
  pub msg_peek: i32,
  #[napi(js_name = "MSG_DONTROUTE")]
  pub msg_dontroute: i32,
  #[napi(js_name = "MSG_EOR")]
  pub msg_eor: i32,
  #[napi(js_name = "MSG_TRUNC")]
  pub msg_trunc: i32,
  #[napi(js_name = "MSG_CTRUNC")]
  pub msg_ctrunc: i32,
  #[napi(js_name = "MSG_WAITALL")]
  pub msg_waitall: i32,
  #[napi(js_name = "MSG_DONTWAIT")]
  pub msg_dontwait: i32,
  #[napi(js_name = "MSG_NOSIGNAL")]
  pub msg_nosignal: Option<i32>,
  #[napi(js_name = "MSG_CMSG_CLOEXEC")]
  pub msg_cmsg_cloexec: Option<i32>,
  /// Descriptors per message the kernel accepts (Linux `SCM_MAX_FD`).
  #[napi(js_name = "SCM_MAX_FD")]
  pub scm_max_fd: u32,
  /// The largest `cmsgSize` whose `CMSG_SPACE` fits in a control buffer.
  #[napi(js_name = "MAX_CMSG_SIZE")]
  pub max_cmsg_size: f64,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn linux_only(value: i32) -> Option<i32> {
  Some(value)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn linux_only(_value: i32) -> Option<i32> {
  None
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux {
  pub const SCM_CREDENTIALS: i32 = libc::SCM_CREDENTIALS;
  pub const SCM_PIDFD: i32 = sendmsg_core::consts::SCM_PIDFD;
  pub const SO_PASSCRED: i32 = libc::SO_PASSCRED;
  pub const MSG_NOSIGNAL: i32 = libc::MSG_NOSIGNAL;
  pub const MSG_CMSG_CLOEXEC: i32 = libc::MSG_CMSG_CLOEXEC;
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod linux {
  // Never read: `linux_only` discards them off Linux.
  pub const SCM_CREDENTIALS: i32 = 0;
  pub const SCM_PIDFD: i32 = 0;
  pub const SO_PASSCRED: i32 = 0;
  pub const MSG_NOSIGNAL: i32 = 0;
  pub const MSG_CMSG_CLOEXEC: i32 = 0;
}

#[napi]
pub fn platform_constants() -> PlatformConstants {
  PlatformConstants {
    sol_socket: libc::SOL_SOCKET,
    scm_rights: libc::SCM_RIGHTS,
    scm_credentials: linux_only(linux::SCM_CREDENTIALS),
    scm_pidfd: linux_only(linux::SCM_PIDFD),
    so_passcred: linux_only(linux::SO_PASSCRED),
    af_unix: libc::AF_UNIX,
    af_inet: libc::AF_INET,
    af_inet6: libc::AF_INET6,
    sock_stream: libc::SOCK_STREAM,
    sock_dgram: libc::SOCK_DGRAM,
    sock_seqpacket: libc::SOCK_SEQPACKET,
    msg_oob: libc::MSG_OOB,
    msg_peek: libc::MSG_PEEK,
    msg_dontroute: libc::MSG_DONTROUTE,
    msg_eor: libc::MSG_EOR,
    msg_trunc: libc::MSG_TRUNC,
    msg_ctrunc: libc::MSG_CTRUNC,
    msg_waitall: libc::MSG_WAITALL,
    msg_dontwait: libc::MSG_DONTWAIT,
    msg_nosignal: linux_only(linux::MSG_NOSIGNAL),
    msg_cmsg_cloexec: linux_only(linux::MSG_CMSG_CLOEXEC),
    scm_max_fd: cmsg::MAX_FDS_PER_MESSAGE as u32,
    max_cmsg_size: cmsg::max_cmsg_payload() as f64,
  }
}
