//! The nRF 802.15.4 sniffer firmware (nRF Connect SDK `samples/peripheral/802154_sniffer`) as a
//! virtual board application: a Zephyr shell with an empty prompt and no colours, echo on until
//! `shell echo off`, and the commands `channel [N]`, `receive` and `sleep`. While receiving,
//! every frame heard on the channel is printed as
//! `received: <hex incl. FCS> power: <dBm> lqi: <n> time: <µs>`, with the hub's timestamp (one
//! clock for every receiver on the virtual air, like the sniffer's own radio clock).
//!
//! The real firmware only talks once the host asserts DTR (`CONFIG_SHELL_BACKEND_SERIAL_CHECK_DTR`);
//! a PTY has no modem lines, so this model talks as soon as it boots.

use ot_hil_air::{AirClient, AirFrame};
use ot_hil_wire::sniffer::{SnifferFrame, emit_line};

use crate::shell;

/// The firmware's default channel (main.c: `channel = 11` until set).
const DEFAULT_CHANNEL: u8 = 11;
/// Zephyr's CONFIG_SHELL_CMD_BUFF_SIZE default.
const CMD_BUFF_SIZE: usize = 256;

/// The sniffer application's RAM state (lost on reboot).
pub struct SnifferApp {
    radio: Option<AirClient>,
    channel: u8,
    receiving: bool,
    echo: bool,
    line: Vec<u8>,
    /// The byte that ended the last line (`\r\n` ends one line, not two).
    last_end: Option<u8>,
    /// Frames printed since boot.
    frames: u64,
}

impl SnifferApp {
    /// Boot: radio off (`sleep` state), echo on, the (empty) prompt printed.
    pub fn boot(radio: Option<AirClient>) -> SnifferApp {
        let app = SnifferApp {
            radio,
            channel: DEFAULT_CHANNEL,
            receiving: false,
            echo: true,
            line: Vec::new(),
            last_end: None,
            frames: 0,
        };
        app.set_radio_channel(0);
        app
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Tune the radio (0 = off). A sniffer's radio registers as a monitor: the virtual air
    /// hands it every frame as transmitted, past the faults it injects on the nodes' links.
    fn set_radio_channel(&self, channel: u8) {
        let Some(radio) = &self.radio else {
            return;
        };
        let tuned = if channel == 0 {
            radio.set_channel(0)
        } else {
            radio.set_monitor(channel)
        };
        if let Err(e) = tuned {
            eprintln!("vdk: sniffer radio: {e}");
        }
    }

    /// Bytes typed by the host.
    pub fn handle_console(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for &b in bytes {
            match b {
                b'\r' | b'\n' => {
                    let continues = self.last_end == Some(b'\r') && b == b'\n';
                    self.last_end = Some(b);
                    if continues {
                        continue;
                    }
                    if self.echo {
                        out.extend_from_slice(b"\r\n");
                    }
                    let line =
                        String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
                    self.run(line.trim(), out);
                }
                // Backspace / delete.
                0x08 | 0x7f => {
                    self.last_end = None;
                    if self.line.pop().is_some() && self.echo {
                        out.extend_from_slice(b"\x08 \x08");
                    }
                }
                0x20..=0x7e => {
                    self.last_end = None;
                    if self.line.len() + 1 < CMD_BUFF_SIZE {
                        self.line.push(b);
                        if self.echo {
                            out.push(b);
                        }
                    }
                }
                // Other control bytes: ignored, like the shell's unsupported escape codes.
                _ => self.last_end = None,
            }
        }
    }

    fn run(&mut self, line: &str, out: &mut Vec<u8>) {
        let args: Vec<&str> = line.split_whitespace().collect();
        match args.as_slice() {
            [] => {}
            ["sleep"] => {
                self.receiving = false;
                self.set_radio_channel(0);
            }
            ["receive"] => {
                self.receiving = true;
                self.set_radio_channel(self.channel);
            }
            ["channel"] => shell::line(out, &self.channel.to_string()),
            ["channel", n] => match n.parse::<u8>() {
                Ok(ch) if (11..=26).contains(&ch) => {
                    self.channel = ch;
                    if self.receiving {
                        self.set_radio_channel(ch);
                    }
                }
                _ => shell::line(out, "Invalid channel number"),
            },
            ["shell", "echo", "off"] => self.echo = false,
            ["shell", "echo", "on"] => self.echo = true,
            ["shell", "echo"] => shell::line(
                out,
                if self.echo {
                    "Echo status: on"
                } else {
                    "Echo status: off"
                },
            ),
            [cmd, ..] => shell::line(out, &format!("{cmd}: command not found")),
        }
    }

    /// A frame the radio heard: printed while receiving on its channel.
    pub fn handle_air(&mut self, frame: &AirFrame, out: &mut Vec<u8>) {
        // The nRF radio reports a frame whose FCS fails as a receive error
        // (NRF_802154_RX_ERROR_INVALID_FCS), which the sniffer does not print.
        if !self.receiving || frame.channel != self.channel || !frame.fcs_ok() {
            return;
        }
        self.frames += 1;
        let line = emit_line(&SnifferFrame {
            psdu: frame.psdu.clone(),
            rssi_dbm: frame.rssi_dbm,
            lqi: frame.lqi,
            timestamp_us: frame.timestamp_us,
        });
        shell::line(out, &line);
    }
}

impl Drop for SnifferApp {
    fn drop(&mut self) {
        // A reboot stops the radio.
        self.set_radio_channel(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(channel: u8, psdu: &[u8]) -> AirFrame {
        AirFrame {
            channel,
            rssi_dbm: -40,
            lqi: 200,
            timestamp_us: 1234,
            psdu: psdu.to_vec(),
            fcs: ot_hil_wire::mac::fcs(psdu),
        }
    }

    #[test]
    fn extcap_start_sequence_then_frames() {
        let mut app = SnifferApp::boot(None);
        let mut out = Vec::new();
        app.handle_console(b"sleep\r\n", &mut out);
        assert_eq!(out, b"sleep\r\n");
        out.clear();
        app.handle_console(b"shell echo off\r\n", &mut out);
        assert_eq!(out, b"shell echo off\r\n");
        out.clear();
        app.handle_console(b"channel 15\r\nreceive\r\n", &mut out);
        assert_eq!(out, b"");
        app.handle_air(&frame(14, &[1, 2, 3]), &mut out);
        assert_eq!(out, b"", "other channel");
        app.handle_air(&frame(15, &[0x41, 0xd8, 0x01]), &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("received: 41d801"), "{text}");
        assert!(
            text.ends_with(" power: -40 lqi: 200 time: 1234\r\n"),
            "{text}"
        );
        let parsed = ot_hil_wire::sniffer::parse_line(text.trim_end())
            .unwrap()
            .unwrap();
        assert_eq!(parsed.psdu, vec![0x41, 0xd8, 0x01]);
        out.clear();
        app.handle_console(b"channel\r\n", &mut out);
        assert_eq!(out, b"15\r\n");
        out.clear();
        let mut corrupted = frame(15, &[0x41, 0xd8, 0x02]);
        corrupted.fcs ^= 0x0100;
        app.handle_air(&corrupted, &mut out);
        assert_eq!(out, b"", "a frame whose FCS fails is not printed");
        app.handle_console(b"\r\nsleep\r\n", &mut out);
        app.handle_air(&frame(15, &[1]), &mut out);
        assert_eq!(out, b"");
        assert_eq!(app.frames(), 1);
    }

    #[test]
    fn bad_commands_answer_and_keep_going() {
        let mut app = SnifferApp::boot(None);
        let mut out = Vec::new();
        app.handle_console(b"shell echo off\rchannel 99\rbogus x\r\xff\x00\r", &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "shell echo off\r\nInvalid channel number\r\nbogus: command not found\r\n"
        );
    }
}
