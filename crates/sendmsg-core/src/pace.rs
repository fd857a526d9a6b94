//! How an event loop reads a readable socket: one message at a time, or in batches, from what its
//! traffic has looked like so far. The one owner of that choice: the binding's drain asks it
//! before reading and tells it what it found ([`RecvBatch::recv`](crate::batch::RecvBatch::recv)
//! makes a plain `recvmsg` when asked for one message).
//!
//! A batch receive (`recvmmsg`) reads what is waiting and then looks for one message more; for
//! request/response traffic, where each readiness brings exactly one reply, that look finds
//! nothing every time and costs a round trip part of a system call's work. A plain `recvmsg`
//! reads the one message and stops, but cannot tell whether more are waiting: whatever is left is
//! reported by the (level-triggered) poll on the loop's next turn, which for a stream of messages
//! would cost a loop turn per message. So a socket reads one at a time only while the evidence
//! says one is all there is:
//!
//! - a drain whose batch receive brought exactly one message (the kernel had no second), and
//! - the socket sent something since its last read (a request, a reply: what the next message
//!   answers), and
//! - no more than [`PROBE_EVERY`] readinesses in a row: then a batch receive looks again, so that
//!   messages queueing up behind the replies (pipelined requests) are seen and batched.
//!
//! A receiver that only receives never reads one at a time, so a stream of messages costs exactly
//! the system calls it did before. On a stream socket, a single read that filled its buffer is
//! evidence of more: the drain goes on in batches at once.

use std::cell::Cell;

/// Readinesses read one message at a time before a batch receive looks for more.
pub const PROBE_EVERY: u8 = 16;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
  /// Messages arrive several per readiness, or nothing says otherwise: batches.
  Batches,
  /// One message per readiness: single reads, `probe_in` more before a batch looks again.
  OneAtATime { probe_in: u8 },
}

/// How the next drain of one socket reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Read {
  /// One `recvmsg`, and the drain ends (unless the message says more follow).
  One,
  /// Batch receives until the kernel has nothing more (or the budget is spent).
  Batches,
}

/// A socket's receive pace; see the module comment.
pub struct Pace {
  state: Cell<State>,
  /// The socket sent something since its last drain.
  sent: Cell<bool>,
}

impl Default for Pace {
  fn default() -> Self {
    Self {
      state: Cell::new(State::Batches),
      sent: Cell::new(false),
    }
  }
}

impl Pace {
  /// The socket handed something to the kernel.
  pub fn note_sent(&self) {
    self.sent.set(true);
  }

  /// How to read now; starts a drain (what is sent from here on counts for the next one).
  pub fn start_drain(&self) -> Read {
    let sent = self.sent.replace(false);
    match self.state.get() {
      State::OneAtATime { probe_in } if sent && probe_in > 0 => {
        self.state.set(State::OneAtATime {
          probe_in: probe_in - 1,
        });
        Read::One
      }
      _ => Read::Batches,
    }
  }

  /// A single read suggests more messages are waiting: batches from now on.
  pub fn more_waiting(&self) {
    self.state.set(State::Batches);
  }

  /// A drain in batches is over: it brought `total` messages, and `exhausted` says whether its
  /// last receive came back short (the kernel had no more), rather than ending on a budget.
  pub fn batches_drained(&self, total: usize, exhausted: bool) {
    self.state.set(if total == 1 && exhausted {
      State::OneAtATime {
        probe_in: PROBE_EVERY,
      }
    } else {
      State::Batches
    });
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn request_response_reads_one_at_a_time_and_probes() {
    let pace = Pace::default();
    assert_eq!(pace.start_drain(), Read::Batches);
    pace.batches_drained(1, true);
    for _ in 0..PROBE_EVERY {
      pace.note_sent();
      assert_eq!(pace.start_drain(), Read::One);
    }
    pace.note_sent();
    assert_eq!(pace.start_drain(), Read::Batches);
    pace.batches_drained(1, true);
    pace.note_sent();
    assert_eq!(pace.start_drain(), Read::One);
  }

  #[test]
  fn a_receiver_that_does_not_send_reads_in_batches() {
    let pace = Pace::default();
    pace.batches_drained(1, true);
    assert_eq!(pace.start_drain(), Read::Batches);
    // One message that filled a budget of one: the kernel was not asked for a second.
    pace.batches_drained(1, false);
    pace.note_sent();
    assert_eq!(pace.start_drain(), Read::Batches);
    pace.batches_drained(5, true);
    pace.note_sent();
    assert_eq!(pace.start_drain(), Read::Batches);
  }

  #[test]
  fn evidence_of_more_switches_to_batches() {
    let pace = Pace::default();
    pace.batches_drained(1, true);
    pace.note_sent();
    assert_eq!(pace.start_drain(), Read::One);
    pace.more_waiting();
    pace.note_sent();
    assert_eq!(pace.start_drain(), Read::Batches);
  }
}
