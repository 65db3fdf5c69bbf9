//! What the board's main loop ([`crate::device`]) waits for. [`crate::sources`] reads it from
//! the console, the radio, the control socket and the shutdown signals.

use std::sync::mpsc::Sender;

use ot_hil_air::AirFrame;

/// Everything the main loop waits for.
#[derive(Debug)]
pub enum Input {
    /// Bytes typed on the console.
    Console(Vec<u8>),
    /// The console input ended (stdin EOF, or a PTY read error).
    ConsoleClosed,
    /// A frame the radio received.
    Air(AirFrame),
    /// A request from the control socket.
    Control(ControlRequest),
    /// SIGINT/SIGTERM/SIGHUP: leave the loop so the PTY link and sockets get removed.
    Shutdown,
    /// The case clock moved on to this instant (µs; boards on a case clock only).
    Clock(u64),
    /// A datagram from the air that was not a frame for this radio (dropped by the radio).
    AirDiscarded,
}

/// A request from the control socket, with the way back.
#[derive(Debug)]
pub struct ControlRequest {
    pub line: String,
    pub reply: Sender<String>,
}
