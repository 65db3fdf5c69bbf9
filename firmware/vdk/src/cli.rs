//! The OpenThread CLI interpreter: parses one command's arguments, calls the Thread stack, and
//! produces OpenThread's output lines and result.
//!
//! Output formats follow OpenThread's `src/cli/cli.cpp` (and `cli_dataset.cpp`, `cli_coap.cpp`);
//! firmware/README.md lists which strings were checked against which source. The interpreter is
//! the same for both console profiles; only the prompt and the `ot ` prefix differ (shell.rs,
//! device.rs).

use std::fmt::Write as _;
use std::net::Ipv6Addr;
use std::time::Instant;

use crate::net::{ActiveDataset, AddressKind, Stack};
use crate::ot_error::OtError;

/// How a command finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Print `Done`.
    Done,
    /// Print `Error N: Name`.
    Error(OtError),
    /// Nothing now: the result line comes later as asynchronous output (ping).
    Pending,
    /// The board reboots (no result line: OpenThread resets before it could print one).
    Reboot { factory: bool },
}

/// Lines a command printed and its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub lines: Vec<String>,
    pub outcome: Outcome,
    /// The command changed the active dataset in a way OpenThread writes to settings.
    pub touched_dataset: bool,
}

impl Reply {
    fn done(lines: Vec<String>) -> Reply {
        Reply {
            lines,
            outcome: Outcome::Done,
            touched_dataset: false,
        }
    }
    fn error(e: OtError) -> Reply {
        Reply {
            lines: Vec::new(),
            outcome: Outcome::Error(e),
            touched_dataset: false,
        }
    }
    fn from_result(r: Result<Vec<String>, OtError>) -> Reply {
        match r {
            Ok(lines) => Reply::done(lines),
            Err(e) => Reply::error(e),
        }
    }

    /// The result line OpenThread prints for this outcome, if any.
    pub fn result_line(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Done => Some("Done".to_string()),
            Outcome::Error(e) => Some(e.to_string()),
            Outcome::Pending | Outcome::Reboot { .. } => None,
        }
    }
}

/// CLI state that lives outside the stack (lost on reboot, like RAM).
#[derive(Debug, Default)]
pub struct Cli {
    /// The dataset buffer `dataset init new` / `dataset channel ...` edit before `dataset commit`.
    dataset_buffer: Option<ActiveDataset>,
}

/// What a command may touch.
pub struct Context<'a> {
    pub stack: &'a mut Stack,
    pub now: Instant,
}

impl Cli {
    pub fn new() -> Self {
        Cli::default()
    }

    /// Run one command (arguments without the `ot` prefix).
    pub fn execute(&mut self, args: &[String], ctx: &mut Context<'_>) -> Reply {
        let Some((cmd, rest)) = args.split_first() else {
            // OpenThread ignores an empty line.
            return Reply {
                lines: Vec::new(),
                outcome: Outcome::Pending,
                touched_dataset: false,
            };
        };
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        match cmd.as_str() {
            "state" => Reply::from_result(state(&rest, ctx)),
            "extaddr" => Reply::from_result(extaddr(&rest, ctx)),
            "channel" => Reply::from_result(channel(&rest, ctx)),
            "panid" => Reply::from_result(panid(&rest, ctx)),
            "extpanid" => Reply::from_result(extpanid(&rest, ctx)),
            "networkname" => Reply::from_result(networkname(&rest, ctx)),
            "networkkey" => Reply::from_result(networkkey(&rest, ctx)),
            "ifconfig" => Reply::from_result(ifconfig(&rest, ctx)),
            "thread" => Reply::from_result(thread(&rest, ctx)),
            "rloc16" => Reply::from_result(rloc16(&rest, ctx)),
            "ipaddr" => Reply::from_result(ipaddr(&rest, ctx)),
            "dataset" => {
                let mut reply = Reply::from_result(self.dataset(&rest, ctx));
                reply.touched_dataset = matches!(rest.first(), Some(&"commit") | Some(&"set"));
                reply
            }
            "factoryreset" => Reply {
                lines: Vec::new(),
                outcome: Outcome::Reboot { factory: true },
                touched_dataset: false,
            },
            "reset" => Reply {
                lines: Vec::new(),
                outcome: Outcome::Reboot { factory: false },
                touched_dataset: false,
            },
            _ => Reply::error(OtError::InvalidCommand),
        }
    }

    fn dataset(&mut self, args: &[&str], ctx: &mut Context<'_>) -> Result<Vec<String>, OtError> {
        match args {
            [] => match &self.dataset_buffer {
                Some(ds) => Ok(dataset_lines(ds)),
                None => Ok(Vec::new()),
            },
            ["init", "new"] => {
                self.dataset_buffer = Some(new_random_dataset(ctx));
                Ok(Vec::new())
            }
            ["init", "active"] => {
                self.dataset_buffer = Some(ctx.stack.dataset().clone());
                Ok(Vec::new())
            }
            ["commit", "active"] => {
                let ds = self.dataset_buffer.clone().ok_or(OtError::InvalidState)?;
                ctx.stack.set_dataset(ds)?;
                Ok(Vec::new())
            }
            ["active"] => Ok(dataset_lines(ctx.stack.dataset())),
            ["clear"] => {
                self.dataset_buffer = None;
                Ok(Vec::new())
            }
            ["channel", v] => {
                let ch = parse_u8(v)?;
                self.buffer_mut()?.channel = ch;
                Ok(Vec::new())
            }
            ["panid", v] => {
                let p = parse_u16(v)?;
                self.buffer_mut()?.pan_id = p;
                Ok(Vec::new())
            }
            ["networkkey", v] => {
                let k = parse_hex_array::<16>(v)?;
                self.buffer_mut()?.network_key = k;
                Ok(Vec::new())
            }
            ["extpanid", v] => {
                let x = parse_hex_array::<8>(v)?;
                self.buffer_mut()?.ext_pan_id = x;
                Ok(Vec::new())
            }
            ["networkname", v] => {
                let name = checked_network_name(v)?;
                self.buffer_mut()?.network_name = name;
                Ok(Vec::new())
            }
            _ => Err(OtError::InvalidCommand),
        }
    }

    /// The dataset buffer, created from the active dataset the first time a field is set.
    fn buffer_mut(&mut self) -> Result<&mut ActiveDataset, OtError> {
        self.dataset_buffer.as_mut().ok_or(OtError::InvalidState)
    }
}

fn new_random_dataset(ctx: &mut Context<'_>) -> ActiveDataset {
    // Until the stack provides ActiveDataset::random, keep the current dataset's values.
    ctx.stack.dataset().clone()
}

fn state(args: &[&str], ctx: &mut Context<'_>) -> Result<Vec<String>, OtError> {
    match args {
        [] => Ok(vec![ctx.stack.role().to_string()]),
        _ => Err(OtError::InvalidArgs),
    }
}

fn extaddr(args: &[&str], ctx: &mut Context<'_>) -> Result<Vec<String>, OtError> {
    match args {
        [] => Ok(vec![hex(&ctx.stack.ext_addr())]),
        _ => Err(OtError::InvalidArgs),
    }
}

/// Change one field of the active dataset; the stack refuses while Thread runs (InvalidState),
/// as `otLinkSetChannel` and friends do.
fn update_dataset(
    ctx: &mut Context<'_>,
    f: impl FnOnce(&mut ActiveDataset),
) -> Result<Vec<String>, OtError> {
    let mut ds = ctx.stack.dataset().clone();
    f(&mut ds);
    ctx.stack.set_dataset(ds)?;
    Ok(Vec::new())
}

fn channel(args: &[&str], ctx: &mut Context<'_>) -> Result<Vec<String>, OtError> {
    match args {
        [] => Ok(vec![ctx.stack.dataset().channel.to_string()]),
        [v] => {
            let ch = parse_u8(v)?;
            if !(11..=26).contains(&ch) {
                return Err(OtError::InvalidArgs);
            }
            update_dataset(ctx, |ds| ds.channel = ch)
        }
        _ => Err(OtError::InvalidArgs),
    }
}

fn panid(args: &[&str], ctx: &mut Context<'_>) -> Result<Vec<String>, OtError> {
    match args {
        [] => Ok(vec![format!("0x{:04x}", ctx.stack.dataset().pan_id)]),
        [v] => {
            let p = parse_u16(v)?;
            update_dataset(ctx, |ds| ds.pan_id = p)
        }
        _ => Err(OtError::InvalidArgs),
    }
}

fn extpanid(args: &[&str], ctx: &mut Context<'_>) -> Result<Vec<String>, OtError> {
    match args {
        [] => Ok(vec![hex(&ctx.stack.dataset().ext_pan_id)]),
        [v] => {
            let x = parse_hex_array::<8>(v)?;
            update_dataset(ctx, |ds| ds.ext_pan_id = x)
        }
        _ => Err(OtError::InvalidArgs),
    }
}

fn checked_network_name(v: &str) -> Result<String, OtError> {
    // OT_NETWORK_NAME_MAX_SIZE is 16 bytes.
    if v.len() > 16 {
        return Err(OtError::InvalidArgs);
    }
    Ok(v.to_string())
}

fn networkname(args: &[&str], ctx: &mut Context<'_>) -> Result<Vec<String>, OtError> {
    match args {
        [] => Ok(vec![ctx.stack.dataset().network_name.clone()]),
        [v] => {
            let name = checked_network_name(v)?;
            update_dataset(ctx, |ds| ds.network_name = name)
        }
        _ => Err(OtError::InvalidArgs),
    }
}

fn networkkey(args: &[&str], ctx: &mut Context<'_>) -> Result<Vec<String>, OtError> {
    match args {
        [] => Ok(vec![hex(&ctx.stack.dataset().network_key)]),
        [v] => {
            let k = parse_hex_array::<16>(v)?;
            update_dataset(ctx, |ds| ds.network_key = k)
        }
        _ => Err(OtError::InvalidArgs),
    }
}

fn ifconfig(args: &[&str], ctx: &mut Context<'_>) -> Result<Vec<String>, OtError> {
    match args {
        [] => Ok(vec![
            if ctx.stack.is_up() { "up" } else { "down" }.to_string(),
        ]),
        ["up"] => ctx.stack.ifconfig_up().map(|_| Vec::new()),
        ["down"] => ctx.stack.ifconfig_down().map(|_| Vec::new()),
        _ => Err(OtError::InvalidArgs),
    }
}

fn thread(args: &[&str], ctx: &mut Context<'_>) -> Result<Vec<String>, OtError> {
    match args {
        ["start"] => ctx.stack.thread_start(ctx.now).map(|_| Vec::new()),
        ["stop"] => {
            ctx.stack.thread_stop();
            Ok(Vec::new())
        }
        _ => Err(OtError::InvalidCommand),
    }
}

fn rloc16(args: &[&str], ctx: &mut Context<'_>) -> Result<Vec<String>, OtError> {
    match args {
        [] => Ok(vec![format!("{:04x}", ctx.stack.rloc16())]),
        _ => Err(OtError::InvalidArgs),
    }
}

fn ipaddr(args: &[&str], ctx: &mut Context<'_>) -> Result<Vec<String>, OtError> {
    let addrs = ctx.stack.addresses();
    let pick = |kind: AddressKind| -> Result<Vec<String>, OtError> {
        addrs
            .iter()
            .find(|(_, k)| *k == kind)
            .map(|(a, _)| vec![ot_ip6(a)])
            .ok_or(OtError::InvalidState)
    };
    match args {
        [] => Ok(addrs.iter().map(|(a, _)| ot_ip6(a)).collect()),
        ["mleid"] => pick(AddressKind::MeshLocalEid),
        ["linklocal"] => pick(AddressKind::LinkLocal),
        ["rloc"] => pick(AddressKind::Rloc),
        _ => Err(OtError::InvalidCommand),
    }
}

/// `dataset active` lines (cli_dataset.cpp `OutputDataset` order).
fn dataset_lines(ds: &ActiveDataset) -> Vec<String> {
    let p = &ds.mesh_local_prefix;
    let prefix = Ipv6Addr::new(
        u16::from_be_bytes([p[0], p[1]]),
        u16::from_be_bytes([p[2], p[3]]),
        u16::from_be_bytes([p[4], p[5]]),
        u16::from_be_bytes([p[6], p[7]]),
        0,
        0,
        0,
        0,
    );
    vec![
        format!("Active Timestamp: {}", ds.active_timestamp),
        format!("Channel: {}", ds.channel),
        format!("Channel Mask: 0x{:08x}", ds.channel_mask),
        format!("Ext PAN ID: {}", hex(&ds.ext_pan_id)),
        format!("Mesh Local Prefix: {}/64", prefix),
        format!("Network Key: {}", hex(&ds.network_key)),
        format!("Network Name: {}", ds.network_name),
        format!("PAN ID: 0x{:04x}", ds.pan_id),
        format!("PSKc: {}", hex(&ds.pskc)),
    ]
}

/// IPv6 address as OpenThread prints it: eight groups in lowercase hex without `::` compression
/// (`OutputIp6Address`), e.g. `fdde:ad00:beef:0:0:ff:fe00:800`.
pub fn ot_ip6(a: &Ipv6Addr) -> String {
    let s = a.segments();
    let mut out = String::with_capacity(39);
    for (i, seg) in s.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{seg:x}");
    }
    out
}

pub fn hex(bytes: &[u8]) -> String {
    crate::firmware::hex(bytes)
}

/// `ParseAsUint8` etc.: decimal, or hex with a `0x` prefix.
fn parse_uint(v: &str, max: u64) -> Result<u64, OtError> {
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse::<u64>(),
    };
    match parsed {
        Ok(n) if n <= max => Ok(n),
        _ => Err(OtError::InvalidArgs),
    }
}

fn parse_u8(v: &str) -> Result<u8, OtError> {
    parse_uint(v, u8::MAX as u64).map(|n| n as u8)
}

fn parse_u16(v: &str) -> Result<u16, OtError> {
    parse_uint(v, u16::MAX as u64).map(|n| n as u16)
}

/// Exactly N bytes of hex (`ParseAsHexString` with a fixed size).
fn parse_hex_array<const N: usize>(v: &str) -> Result<[u8; N], OtError> {
    let bytes = parse_hex(v)?;
    bytes.try_into().map_err(|_| OtError::InvalidArgs)
}

pub fn parse_hex(v: &str) -> Result<Vec<u8>, OtError> {
    if v.len() % 2 != 0 {
        return Err(OtError::InvalidArgs);
    }
    (0..v.len())
        .step_by(2)
        .map(|i| {
            v.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(OtError::InvalidArgs)
        })
        .collect()
}
