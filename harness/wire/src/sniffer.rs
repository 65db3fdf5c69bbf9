//! The serial line protocol of the nRF 802.15.4 sniffer firmware:
//! `received: <psdu hex incl. FCS> power: <dBm> lqi: <0..255> time: <µs>`.
//!
//! Parsing is as tolerant as Nordic's extcap script (`re.search` of its regex): leading junk and
//! extra whitespace are fine, lines without a frame are `Ok(None)`. The two FCS bytes printed at the
//! end of the PSDU are stripped without being checked (the radio may have modified them).

use std::sync::LazyLock;

use regex::Regex;

use crate::WireError;
use crate::mac;

/// What the extcap script sends to start capturing on `channel` (each line ends with `\r\n`):
/// stop the radio, turn the shell echo off, select the channel, start receiving.
pub fn start_commands(channel: u8) -> [String; 4] {
    [
        "sleep\r\n".to_owned(),
        "shell echo off\r\n".to_owned(),
        format!("channel {channel}\r\n"),
        "receive\r\n".to_owned(),
    ]
}

/// What the extcap script sends to stop capturing.
pub const STOP_COMMANDS: [&str; 2] = ["\r\n", "sleep\r\n"];

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnifferFrame {
    /// PSDU without FCS.
    pub psdu: Vec<u8>,
    pub rssi_dbm: i8,
    pub lqi: u8,
    /// Microseconds since the sniffer booted.
    pub timestamp_us: u64,
}

static FRAME_LINE: LazyLock<Regex> = LazyLock::new(|| {
    // The extcap script's RCV_REGEX, with ASCII classes (the firmware prints ASCII only).
    Regex::new(
        r"received:[[:space:]]+([0-9a-fA-F]+)[[:space:]]+power:[[:space:]]+(-?[0-9]+)[[:space:]]+lqi:[[:space:]]+([0-9]+)[[:space:]]+time:[[:space:]]+(-?[0-9]+)",
    )
        .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
});

/// Parse one line. `Ok(None)`: no frame on this line (blank, prompt, echo, other output).
/// `Err`: a frame line whose fields are out of range or whose hex is odd or too short.
pub fn parse_line(line: &str) -> Result<Option<SnifferFrame>, WireError> {
    let Some(caps) = FRAME_LINE.captures(line) else {
        return Ok(None);
    };
    let field = |i: usize| caps.get(i).map_or("", |m| m.as_str());
    let bytes = hex::decode(field(1))
        .map_err(|_| WireError::malformed("sniffer line", "odd number of hex digits"))?;
    let Some(body_len) = bytes.len().checked_sub(mac::FCS_LEN) else {
        return Err(WireError::truncated(
            "sniffer psdu",
            mac::FCS_LEN,
            bytes.len(),
        ));
    };
    let rssi_dbm = field(2)
        .parse::<i8>()
        .map_err(|_| WireError::malformed("sniffer line", "power out of range"))?;
    let lqi = field(3)
        .parse::<u8>()
        .map_err(|_| WireError::malformed("sniffer line", "lqi out of range"))?;
    let timestamp_us = field(4)
        .parse::<u64>()
        .map_err(|_| WireError::malformed("sniffer line", "time out of range"))?;
    let mut psdu = bytes;
    psdu.truncate(body_len);
    Ok(Some(SnifferFrame {
        psdu,
        rssi_dbm,
        lqi,
        timestamp_us,
    }))
}

/// The line the firmware prints for `frame` (lowercase hex, FCS computed with CRC-16/KERMIT), without
/// line terminator.
pub fn emit_line(frame: &SnifferFrame) -> String {
    format!(
        "received: {} power: {} lqi: {} time: {}",
        hex::encode(mac::append_fcs(&frame.psdu)),
        frame.rssi_dbm,
        frame.lqi,
        frame.timestamp_us
    )
}

/// Fuzzing entry point.
pub fn fuzz_parse_line(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(Some(frame)) = parse_line(text)
    {
        assert_eq!(parse_line(&emit_line(&frame)), Ok(Some(frame)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const README_LINE: &str = "received: 49a85d41a5fffff4110f10270000369756e65619d09428a04b301951821db234460aa5ec4ff506631ef8adb22674683700 power: -39 lqi: 220 time: 15822687";

    #[test]
    fn parses_readme_example() {
        let frame = parse_line(README_LINE).unwrap().unwrap();
        assert_eq!(frame.rssi_dbm, -39);
        assert_eq!(frame.lqi, 220);
        assert_eq!(frame.timestamp_us, 15_822_687);
        assert_eq!(frame.psdu.len(), 49 - 2);
        assert_eq!(&frame.psdu[..3], &[0x49, 0xa8, 0x5d]);
        assert_eq!(frame.psdu.last(), Some(&0x68));
        // The FCS bytes were stripped, not checked.
        let psdu = mac::parse(&frame.psdu).unwrap();
        assert_eq!(psdu.repr.frame_type, mac::FrameType::Data);
    }

    #[test]
    fn tolerant_like_the_extcap_regex() {
        assert_eq!(parse_line(""), Ok(None));
        assert_eq!(parse_line("\r"), Ok(None));
        assert_eq!(parse_line("channel 15"), Ok(None));
        let junk = format!("\x1b[m\0garbage {README_LINE}\r");
        assert!(parse_line(&junk).unwrap().is_some());
        let spaced = README_LINE.replace(' ', "\t  ");
        assert!(parse_line(&spaced).unwrap().is_some());
        assert!(parse_line("received: abc power: 1 lqi: 1 time: 1").is_err());
        assert!(parse_line("received: ab power: 1 lqi: 1 time: 1").is_err());
        assert!(parse_line("received: abcd power: 1 lqi: 256 time: 1").is_err());
        assert!(parse_line("received: abcd power: -129 lqi: 2 time: 1").is_err());
        assert!(parse_line("received: abcd power: 1 lqi: 2 time: -1").is_err());
        assert_eq!(
            parse_line("received: ABCD power: 1 lqi: 2 time: 3"),
            Ok(Some(SnifferFrame {
                psdu: vec![],
                rssi_dbm: 1,
                lqi: 2,
                timestamp_us: 3
            }))
        );
    }

    #[test]
    fn emit_round_trip_with_fcs() {
        let frame = parse_line(README_LINE).unwrap().unwrap();
        let line = emit_line(&frame);
        assert_eq!(parse_line(&line), Ok(Some(frame.clone())));
        assert!(line.starts_with("received: 49a85d41"));
        assert!(line.ends_with(" power: -39 lqi: 220 time: 15822687"));
        let hex_part = line.split_whitespace().nth(1).unwrap();
        let with_fcs = hex::decode(hex_part).unwrap();
        assert!(mac::split_fcs(&with_fcs).unwrap().1);
        fuzz_parse_line(line.as_bytes());
    }
}
