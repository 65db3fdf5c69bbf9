//! The `coaps` command line, parsed the way `cli_coap_secure.cpp` does.

use std::net::{Ipv6Addr, SocketAddrV6};

use ot_hil_wire::coap::RequestType;

use super::COAPS_PORT;
use super::config::CoapsBuild;
use crate::cli::parse_u16;
use crate::ot_error::OtError;

/// Sizes in `cli_coap_secure.hpp` (kMaxUriLength, kMaxBufferSize, kPskMaxLength, kPskIdMaxLength).
const MAX_URI_LENGTH: usize = 32;
const MAX_CONTENT_LENGTH: usize = 16;
const MAX_PSK_LENGTH: usize = 32;
const MAX_PSK_ID_LENGTH: usize = 32;

/// Parse `coaps` command arguments the way `cli_coap_secure.cpp` does. Pure: no state, so the
/// parser can be tested on its own.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `coaps` (no argument): print the table, InvalidArgs.
    Table,
    Help,
    Start {
        verify_peer: bool,
    },
    Stop,
    Psk {
        key: Vec<u8>,
        identity: Vec<u8>,
    },
    X509,
    Connect {
        peer: SocketAddrV6,
    },
    Disconnect,
    Resource(Option<String>),
    Set(Option<String>),
    Request {
        method: RequestType,
        uri: String,
        confirmable: bool,
        payload: Vec<u8>,
    },
    IsClosed,
    IsConnActive,
    IsConnected,
}

impl CoapsBuild {
    /// Parse one `coaps` command line (arguments after `coaps`).
    pub fn parse(&self, args: &[&str]) -> Result<Command, OtError> {
        let Some((&cmd, rest)) = args.split_first() else {
            return Ok(Command::Table);
        };
        if cmd == "help" {
            return Ok(Command::Help);
        }
        if !self.commands().contains(&cmd) {
            return Err(OtError::InvalidCommand);
        }
        let arg = |i: usize| rest.get(i).copied();
        match cmd {
            "start" => match arg(0) {
                None | Some("true") => Ok(Command::Start { verify_peer: true }),
                Some("false") => Ok(Command::Start { verify_peer: false }),
                // OpenThread 2024 also takes a maximum number of connection attempts (not
                // modelled beyond parsing: the session behaves as with no limit).
                Some(n) if self.state_commands => {
                    parse_u16(n)?;
                    Ok(Command::Start { verify_peer: true })
                }
                Some(_) => Err(OtError::InvalidArgs),
            },
            "stop" => Ok(Command::Stop),
            "psk" => {
                let (Some(key), Some(id)) = (arg(0), arg(1)) else {
                    return Err(OtError::InvalidArgs);
                };
                if key.len() > MAX_PSK_LENGTH || id.len() > MAX_PSK_ID_LENGTH {
                    return Err(OtError::InvalidArgs);
                }
                Ok(Command::Psk {
                    key: key.as_bytes().to_vec(),
                    identity: id.as_bytes().to_vec(),
                })
            }
            "x509" => Ok(Command::X509),
            "connect" => {
                let ip: Ipv6Addr = arg(0)
                    .unwrap_or("")
                    .parse()
                    .map_err(|_| OtError::InvalidArgs)?;
                let port = match arg(1) {
                    None => COAPS_PORT,
                    Some(p) => parse_u16(p)?,
                };
                Ok(Command::Connect {
                    peer: SocketAddrV6::new(ip, port, 0, 0),
                })
            }
            "disconnect" => Ok(Command::Disconnect),
            "resource" => match arg(0) {
                None => Ok(Command::Resource(None)),
                Some(u) if u.len() >= MAX_URI_LENGTH => Err(OtError::InvalidArgs),
                Some(u) => Ok(Command::Resource(Some(u.to_string()))),
            },
            // Only the first argument counts: `coaps set psk 123 pskid` sets the content "psk".
            "set" => match arg(0) {
                None => Ok(Command::Set(None)),
                Some(c) if c.len() >= MAX_CONTENT_LENGTH => Err(OtError::InvalidArgs),
                Some(c) => Ok(Command::Set(Some(c.to_string()))),
            },
            "get" | "put" | "post" | "delete" => {
                let method = match cmd {
                    "get" => RequestType::Get,
                    "put" => RequestType::Put,
                    "post" => RequestType::Post,
                    _ => RequestType::Delete,
                };
                let uri = arg(0).ok_or(OtError::InvalidArgs)?;
                if uri.len() >= MAX_URI_LENGTH {
                    return Err(OtError::InvalidArgs);
                }
                Ok(Command::Request {
                    method,
                    uri: uri.to_string(),
                    confirmable: arg(1) == Some("con"),
                    payload: arg(2).map(|p| p.as_bytes().to_vec()).unwrap_or_default(),
                })
            }
            "isclosed" => Ok(Command::IsClosed),
            "isconnactive" => Ok(Command::IsConnActive),
            "isconnected" => Ok(Command::IsConnected),
            _ => Err(OtError::InvalidCommand),
        }
    }
}
