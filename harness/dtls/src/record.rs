//! The record layer of a connection: epochs 0 (plaintext) and 1 (after ChangeCipherSpec),
//! CCM_8 protection, 48-bit sequence numbers and the replay window (RFC 6347 §4.1).

use crate::codec::Codec;
use crate::crypto::{RecordCipher, ReplayWindow};
use crate::enums::*;
use crate::error::Error;
use crate::event::Role;
use crate::messages::*;
use crate::transcript::Direction;

/// Protocol version we speak.
pub(crate) const VERSION: ProtocolVersion = ProtocolVersion::DTLS1_2;

/// Record layer state: epochs 0 (plaintext) and 1 (after ChangeCipherSpec).
#[derive(Default)]
pub(crate) struct RecordLayer {
    pub(crate) write_epoch: u16,
    pub(crate) write_seq: [u64; 2],
    pub(crate) write_cipher: Option<RecordCipher>,
    pub(crate) read_epoch: u16,
    pub(crate) read_cipher: Option<RecordCipher>,
    /// Installed when their ChangeCipherSpec arrives.
    pub(crate) pending_read: Option<RecordCipher>,
    pub(crate) replay: [ReplayWindow; 2],
    /// Records of epoch 1 that failed authentication and were dropped.
    pub(crate) bad_macs: u32,
}

impl RecordLayer {
    /// Protect `plaintext` as the next record of `epoch`: its sequence number and the record.
    pub(crate) fn seal(
        &mut self,
        content_type: ContentType,
        epoch: u16,
        plaintext: &[u8],
    ) -> (u64, Vec<u8>) {
        let idx = usize::from(epoch.min(1));
        let seq = self.write_seq[idx];
        self.write_seq[idx] += 1;
        let body = match (&self.write_cipher, epoch) {
            (Some(c), 1) => c.seal(epoch, seq, content_type, VERSION, plaintext),
            _ => plaintext.to_vec(),
        };
        let header = RecordHeader {
            content_type,
            version: VERSION,
            epoch,
            sequence: seq,
            length: body.len() as u16,
        };
        let mut out = header.get_encoding();
        out.extend_from_slice(&body);
        (seq, out)
    }

    /// The plaintext of a received record, or `None` when it is to be dropped silently
    /// (replayed, from an epoch we have no keys for, failing authentication).
    /// `awaiting_finished`: their Finished is the next message, which changes what a bad MAC
    /// means; `bad_mac_limit`: how many records failing authentication end the connection.
    pub(crate) fn open(
        &mut self,
        r: &RawRecord<'_>,
        awaiting_finished: bool,
        bad_mac_limit: Option<u32>,
    ) -> Result<Option<Vec<u8>>, Error> {
        let h = r.header;
        match h.epoch {
            0 => {
                // After the switch only retransmitted handshake messages are meaningful in epoch 0.
                if self.read_epoch > 0 && h.content_type != ContentType::HANDSHAKE {
                    return Ok(None);
                }
                if !self.replay[0].check(h.sequence) {
                    return Ok(None);
                }
                self.replay[0].mark(h.sequence);
                Ok(Some(r.fragment.to_vec()))
            }
            1 if self.read_epoch == 1 => {
                if !self.replay[1].check(h.sequence) {
                    // RFC 6347 §4.1.2.6: duplicates are discarded silently.
                    return Ok(None);
                }
                let Some(cipher) = &self.read_cipher else {
                    return Ok(None);
                };
                match cipher.open(h.epoch, h.sequence, h.content_type, h.version, r.fragment) {
                    Ok(p) => {
                        self.replay[1].mark(h.sequence);
                        Ok(Some(p))
                    }
                    Err(_) => self
                        .bad_mac(awaiting_finished, bad_mac_limit)
                        .map(|()| None),
                }
            }
            // A record from an epoch we have no keys for yet (reordered past the CCS): dropped,
            // the peer retransmits.
            _ => Ok(None),
        }
    }

    /// A record of epoch 1 failed authentication.
    fn bad_mac(
        &mut self,
        awaiting_finished: bool,
        bad_mac_limit: Option<u32>,
    ) -> Result<(), Error> {
        // Waiting for Finished, a bad MAC means the handshake derived different
        // keys (wrong PSK or password): mbedtls (ssl_msg.c, "Except when waiting
        // for Finished") fails with a bad_record_mac alert, and so do we.
        if awaiting_finished {
            return Err(Error::hs(
                AlertDescription::BAD_RECORD_MAC,
                "finished failed record authentication (keys differ: wrong psk or password?)",
            ));
        }
        // RFC 6347 §4.1.2.7: otherwise invalid records are silently discarded.
        self.bad_macs += 1;
        if bad_mac_limit.is_some_and(|l| self.bad_macs >= l) {
            return Err(Error::hs(
                AlertDescription::BAD_RECORD_MAC,
                "too many records with bad mac",
            ));
        }
        Ok(())
    }
}

/// The direction of the records we send.
pub(crate) fn own_direction(role: Role) -> Direction {
    match role {
        Role::Client => Direction::ClientToServer,
        Role::Server => Direction::ServerToClient,
    }
}

/// The direction of the records the peer sends.
pub(crate) fn peer_direction(role: Role) -> Direction {
    match role {
        Role::Client => Direction::ServerToClient,
        Role::Server => Direction::ClientToServer,
    }
}
