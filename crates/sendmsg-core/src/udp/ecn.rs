//! Explicit Congestion Notification: the two low bits of the IPv4 TOS byte and of the IPv6
//! traffic class. The six bits above them are the DSCP, which belongs to whoever set the socket's
//! TOS: writing an ECN mark must keep them (quinn#2763 shows what wiping them costs).

/// An ECN codepoint (RFC 3168).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Ecn {
  /// Not ECN-capable transport.
  NotEct = 0b00,
  /// ECN-capable transport, ECT(1) (L4S).
  Ect1 = 0b01,
  /// ECN-capable transport, ECT(0).
  Ect0 = 0b10,
  /// Congestion experienced.
  Ce = 0b11,
}

/// The ECN bits of a TOS or traffic-class byte.
pub const ECN_MASK: u8 = 0b11;

impl Ecn {
  /// The codepoint in the low two bits of `tos`.
  pub fn from_bits(tos: u8) -> Self {
    match tos & ECN_MASK {
      0b00 => Self::NotEct,
      0b01 => Self::Ect1,
      0b10 => Self::Ect0,
      _ => Self::Ce,
    }
  }

  /// From its number (0 to 3); `None` for anything else.
  pub fn from_u8(value: u8) -> Option<Self> {
    (value <= ECN_MASK).then(|| Self::from_bits(value))
  }

  /// `tos` with its ECN bits replaced by this codepoint and its DSCP bits kept.
  pub fn apply_to(self, tos: u8) -> u8 {
    (tos & !ECN_MASK) | self as u8
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn writing_ecn_keeps_the_dscp() {
    let af41 = 34 << 2; // DSCP AF41
    assert_eq!(Ecn::Ect0.apply_to(af41), af41 | 0b10);
    assert_eq!(Ecn::Ce.apply_to(af41 | 0b01), af41 | 0b11);
    assert_eq!(Ecn::NotEct.apply_to(0xff), 0xfc);
    for tos in 0..=255u8 {
      assert_eq!(Ecn::from_bits(tos) as u8, tos & 3);
    }
    assert_eq!(Ecn::from_u8(4), None);
  }
}
