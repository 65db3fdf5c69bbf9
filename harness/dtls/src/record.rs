//! The record layer of a connection: epochs 0 (plaintext) and 1 (after ChangeCipherSpec),
//! CCM_8 protection, 48-bit sequence numbers and the replay window (RFC 6347 §4.1).

use crate::codec::Codec;
use crate::conn::Role;
use crate::crypto::{RecordCipher, ReplayWindow};
use crate::enums::*;
use crate::error::Error;
use crate::handshake::{Context, VERSION};
use crate::messages::*;
use crate::transcript::Direction;

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
}

impl Context {
    /// Protect `plaintext` as the next record of `epoch` (and log it in the transcript).
    pub(crate) fn encode_record(
        &mut self,
        content_type: ContentType,
        epoch: u16,
        plaintext: &[u8],
    ) -> Vec<u8> {
        let idx = usize::from(epoch.min(1));
        let seq = self.rec.write_seq[idx];
        self.rec.write_seq[idx] += 1;
        let body = match (&self.rec.write_cipher, epoch) {
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
        self.transcript.record(
            own_direction(self.role),
            epoch,
            seq,
            content_type,
            plaintext,
        );
        let mut out = header.get_encoding();
        out.extend_from_slice(&body);
        out
    }

    /// The plaintext of a received record, or `None` when it is to be dropped silently
    /// (replayed, from an epoch we have no keys for, failing authentication).
    /// `awaiting_finished`: their Finished is the next message, which changes what a bad MAC
    /// means.
    pub(crate) fn unprotect(
        &mut self,
        r: &RawRecord<'_>,
        awaiting_finished: bool,
    ) -> Result<Option<Vec<u8>>, Error> {
        let h = r.header;
        match h.epoch {
            0 => {
                // After the switch only retransmitted handshake messages are meaningful in epoch 0.
                if self.rec.read_epoch > 0 && h.content_type != ContentType::HANDSHAKE {
                    return Ok(None);
                }
                if !self.rec.replay[0].check(h.sequence) {
                    return Ok(None);
                }
                self.rec.replay[0].mark(h.sequence);
                Ok(Some(r.fragment.to_vec()))
            }
            1 if self.rec.read_epoch == 1 => {
                if !self.rec.replay[1].check(h.sequence) {
                    // RFC 6347 §4.1.2.6: duplicates are discarded silently.
                    return Ok(None);
                }
                let Some(cipher) = &self.rec.read_cipher else {
                    return Ok(None);
                };
                match cipher.open(h.epoch, h.sequence, h.content_type, h.version, r.fragment) {
                    Ok(p) => {
                        self.rec.replay[1].mark(h.sequence);
                        Ok(Some(p))
                    }
                    Err(_) => self.bad_mac(awaiting_finished).map(|()| None),
                }
            }
            // A record from an epoch we have no keys for yet (reordered past the CCS): dropped,
            // the peer retransmits.
            _ => Ok(None),
        }
    }

    /// A record of epoch 1 failed authentication.
    fn bad_mac(&mut self, awaiting_finished: bool) -> Result<(), Error> {
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
        if self
            .config
            .bad_mac_limit
            .is_some_and(|l| self.bad_macs >= l)
        {
            return Err(Error::hs(
                AlertDescription::BAD_RECORD_MAC,
                "too many records with bad mac",
            ));
        }
        Ok(())
    }
}

/// The direction of the records we send.
fn own_direction(role: Role) -> Direction {
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
