//! Handshake message reassembly (RFC 6347 §4.2.3): fragments may arrive out of order,
//! overlap, or repeat; a message is complete when every byte of it has been seen.

use std::collections::BTreeMap;

use crate::enums::HandshakeType;
use crate::messages::HandshakeFragment;

/// Largest handshake message we reassemble; bigger announced lengths are rejected so a
/// peer cannot make us allocate 16 MiB (mbedtls caps incoming messages similarly).
pub const MAX_HANDSHAKE_LEN: usize = 16 * 1024;

#[derive(Debug, Clone)]
struct Partial {
    msg_type: HandshakeType,
    body: Vec<u8>,
    /// One bit per body byte: 1 = received.
    mask: Vec<u8>,
    missing: usize,
}

/// Why a fragment was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    #[error("handshake message of {0} bytes is too large")]
    TooLarge(u32),
    #[error("fragment disagrees with earlier fragments of the same message")]
    Inconsistent,
}

/// Per-direction reassembly buffers, keyed by message_seq.
#[derive(Debug, Clone, Default)]
pub struct Reassembler {
    partial: BTreeMap<u16, Partial>,
}

/// A complete handshake message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complete {
    pub msg_type: HandshakeType,
    pub message_seq: u16,
    pub body: Vec<u8>,
}

impl Reassembler {
    /// Add a fragment; returns the message if this fragment completed it.
    pub fn push(
        &mut self,
        frag: &HandshakeFragment<'_>,
    ) -> Result<Option<Complete>, ReassemblyError> {
        let h = frag.header;
        let len = h.length as usize;
        if len > MAX_HANDSHAKE_LEN {
            return Err(ReassemblyError::TooLarge(h.length));
        }
        let seq = h.message_seq;
        // Fast path: an unfragmented message we have no partial state for.
        if h.fragment_offset == 0
            && h.fragment_length == h.length
            && !self.partial.contains_key(&seq)
        {
            return Ok(Some(Complete {
                msg_type: h.msg_type,
                message_seq: seq,
                body: frag.body.to_vec(),
            }));
        }
        let p = self.partial.entry(seq).or_insert_with(|| Partial {
            msg_type: h.msg_type,
            body: vec![0; len],
            mask: vec![0; len.div_ceil(8)],
            missing: len,
        });
        if p.msg_type != h.msg_type || p.body.len() != len {
            return Err(ReassemblyError::Inconsistent);
        }
        let off = h.fragment_offset as usize;
        for (i, b) in frag.body.iter().enumerate() {
            let pos = off + i;
            // The header parser guarantees offset + length <= message length.
            if let (Some(slot), Some(m)) = (p.body.get_mut(pos), p.mask.get_mut(pos / 8)) {
                let bit = 1u8 << (pos % 8);
                if *m & bit == 0 {
                    *m |= bit;
                    *slot = *b;
                    p.missing -= 1;
                }
            }
        }
        if p.missing == 0 {
            let p = self
                .partial
                .remove(&seq)
                .ok_or(ReassemblyError::Inconsistent)?;
            return Ok(Some(Complete {
                msg_type: p.msg_type,
                message_seq: seq,
                body: p.body,
            }));
        }
        Ok(None)
    }

    /// Drop partial messages below `next_seq` (already processed).
    pub fn discard_below(&mut self, next_seq: u16) {
        self.partial.retain(|s, _| *s >= next_seq);
    }

    pub fn clear(&mut self) {
        self.partial.clear();
    }

    /// Bytes held in partial buffers.
    pub fn held_bytes(&self) -> usize {
        self.partial
            .values()
            .map(|p| p.body.len() + p.mask.len() + 32)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::HandshakeHeader;

    fn frag(seq: u16, len: u32, off: u32, body: &[u8]) -> (HandshakeHeader, Vec<u8>) {
        (
            HandshakeHeader {
                msg_type: HandshakeType::CERTIFICATE,
                length: len,
                message_seq: seq,
                fragment_offset: off,
                fragment_length: body.len() as u32,
            },
            body.to_vec(),
        )
    }

    fn push(r: &mut Reassembler, f: &(HandshakeHeader, Vec<u8>)) -> Option<Complete> {
        r.push(&HandshakeFragment {
            header: f.0,
            body: &f.1,
        })
        .unwrap()
    }

    #[test]
    fn out_of_order_and_overlapping() {
        let mut r = Reassembler::default();
        let msg: Vec<u8> = (0..20).collect();
        assert!(push(&mut r, &frag(2, 20, 12, &msg[12..])).is_none());
        assert!(push(&mut r, &frag(2, 20, 0, &msg[0..8])).is_none());
        assert!(
            push(&mut r, &frag(2, 20, 0, &msg[0..8])).is_none(),
            "duplicate"
        );
        assert!(r.held_bytes() > 20);
        let done = push(&mut r, &frag(2, 20, 5, &msg[5..14])).expect("overlap completes");
        assert_eq!(done.body, msg);
        assert_eq!(r.held_bytes(), 0);
    }

    #[test]
    fn refuses_huge_and_inconsistent() {
        let mut r = Reassembler::default();
        let (h, b) = frag(0, 1 << 20, 0, &[1]);
        assert_eq!(
            r.push(&HandshakeFragment {
                header: h,
                body: &b
            }),
            Err(ReassemblyError::TooLarge(1 << 20))
        );
        push(&mut r, &frag(1, 10, 0, &[1, 2]));
        let (h, b) = frag(1, 11, 2, &[3]);
        assert_eq!(
            r.push(&HandshakeFragment {
                header: h,
                body: &b
            }),
            Err(ReassemblyError::Inconsistent)
        );
    }
}
