//! The OpenThread CLI interpreter: parses one command's arguments, calls the Thread stack and the
//! CoAP app, and produces OpenThread's output lines and result.
//!
//! Output formats follow OpenThread's `src/cli/cli.cpp`, `cli_dataset.cpp` and `cli_coap.cpp`;
//! firmware/README.md lists which strings were checked against which source. The interpreter is
//! the same for both console profiles; only the prompt and the `ot ` prefix differ (shell.rs,
//! device.rs).

use std::fmt::Write as _;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::time::{Duration, Instant};

use ot_hil_wire::coap::RequestType;

use crate::coap::{COAP_PORT, CoapActions, CoapApp, error_text};
use crate::coaps::{COAPS_PORT, CoapsApp, CoapsBuild, CoapsResult};
use crate::net::dataset::SecurityPolicy;
use crate::net::{ActiveDataset, AddressKind, NetEvent, PingRequest, Role, Stack};
use crate::ot_error::OtError;
use crate::ot_text::ot_ip6;

/// How a command finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Print `Done`.
    Done,
    /// Print `Error N: Name`.
    Error(OtError),
    /// Nothing now: the result line comes later as asynchronous output (ping), or nothing at
    /// all (an empty line).
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
    fn new(lines: Vec<String>, outcome: Outcome) -> Reply {
        Reply {
            lines,
            outcome,
            touched_dataset: false,
        }
    }

    fn from_result(r: Result<Vec<String>, OtError>) -> Reply {
        match r {
            Ok(lines) => Reply::new(lines, Outcome::Done),
            Err(e) => Reply::new(Vec::new(), Outcome::Error(e)),
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

/// Asynchronous output produced outside a command (stack events, CoAP timers).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AsyncOutput {
    pub lines: Vec<String>,
    /// A pending command (ping) printed its final result line.
    pub finished_pending: bool,
    /// The node attached (OpenThread stores its network info then).
    pub attached: bool,
}

/// CLI state that lives outside the stack (lost on reboot, like RAM).
#[derive(Debug, Default)]
pub struct Cli {
    /// The dataset buffer that `dataset init new` / `dataset channel ...` edit before
    /// `dataset commit active`.
    dataset_buffer: Option<ActiveDataset>,
    coap: CoapApp,
    /// CoAP Secure (`coaps`), present when the image has it.
    coaps: Option<CoapsApp>,
    /// Sum of the reply round-trip times of the running ping, in whole milliseconds as
    /// OpenThread accumulates them (its average is computed from this sum).
    ping_total_ms: u64,
}

/// What a command may touch.
pub struct Context<'a> {
    pub stack: &'a mut Stack,
    pub now: Instant,
    /// Whether an Active Operational Dataset exists (committed, restored from settings, or
    /// created by attaching). Before that OpenThread answers `dataset active` with NotFound.
    pub active_dataset: bool,
}

/// The OpenThread CLI commands this model implements, in OpenThread's (sorted) table order, for
/// `help`.
const COMMANDS: &[&str] = &[
    "coap",
    "coaps",
    "channel",
    "dataset",
    "extaddr",
    "extpanid",
    "factoryreset",
    "help",
    "ifconfig",
    "ipaddr",
    "mac",
    "networkkey",
    "networkname",
    "panid",
    "ping",
    "reset",
    "rloc16",
    "state",
    "thread",
];

impl Cli {
    pub fn new() -> Self {
        Cli::default()
    }

    /// Run one command (arguments without the `ot` prefix).
    pub fn execute(&mut self, args: &[String], ctx: &mut Context<'_>) -> Reply {
        let Some((cmd, rest)) = args.split_first() else {
            // OpenThread ignores an empty line.
            return Reply::new(Vec::new(), Outcome::Pending);
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
            "mac" => Reply::from_result(mac(&rest, ctx)),
            "dataset" => {
                let mut reply = Reply::from_result(self.dataset(&rest, ctx));
                reply.touched_dataset = matches!(rest.first(), Some(&"commit") | Some(&"set"));
                reply
            }
            "ping" => self.ping(&rest, ctx),
            "coap" => Reply::from_result(self.coap(&rest, ctx)),
            "coaps" => self.coaps(&rest, ctx),
            "help" => Reply::from_result(Ok(COMMANDS.iter().map(|c| c.to_string()).collect())),
            "factoryreset" => Reply::new(Vec::new(), Outcome::Reboot { factory: true }),
            "reset" => Reply::new(Vec::new(), Outcome::Reboot { factory: false }),
            _ => Reply::from_result(Err(OtError::InvalidCommand)),
        }
    }

    // -- dataset (cli_dataset.cpp) --

    fn dataset(&mut self, args: &[&str], ctx: &mut Context<'_>) -> Result<Vec<String>, OtError> {
        match args {
            [] => Ok(self
                .dataset_buffer
                .as_ref()
                .map(dataset_lines)
                .unwrap_or_default()),
            ["init", "new"] => {
                self.dataset_buffer = Some(crate::entropy::with(ActiveDataset::random));
                Ok(Vec::new())
            }
            ["init", "active"] => {
                if !ctx.active_dataset {
                    return Err(OtError::NotFound);
                }
                self.dataset_buffer = Some(ctx.stack.dataset().clone());
                Ok(Vec::new())
            }
            ["commit", "active"] => {
                let ds = self.dataset_buffer.clone().ok_or(OtError::InvalidState)?;
                ctx.stack.set_dataset(ds)?;
                Ok(Vec::new())
            }
            ["active", ..] if !ctx.active_dataset => Err(OtError::NotFound),
            ["active"] => Ok(dataset_lines(ctx.stack.dataset())),
            ["active", "-x"] => Ok(vec![hex::encode(ctx.stack.dataset().to_tlvs())]),
            ["set", "active", tlvs] => {
                let bytes = parse_hex(tlvs)?;
                let ds = ActiveDataset::from_tlvs(&bytes)?;
                ctx.stack.set_dataset(ds)?;
                Ok(Vec::new())
            }
            ["clear"] => {
                self.dataset_buffer = None;
                Ok(Vec::new())
            }
            ["channel", v] => {
                let ch = parse_u8(v)?;
                self.buffer_mut(ctx)?.channel = ch;
                Ok(Vec::new())
            }
            ["panid", v] => {
                let p = parse_u16(v)?;
                self.buffer_mut(ctx)?.pan_id = p;
                Ok(Vec::new())
            }
            ["networkkey", v] => {
                let k = parse_hex_array::<16>(v)?;
                self.buffer_mut(ctx)?.network_key = k;
                Ok(Vec::new())
            }
            ["extpanid", v] => {
                let x = parse_hex_array::<8>(v)?;
                self.buffer_mut(ctx)?.ext_pan_id = x;
                Ok(Vec::new())
            }
            ["networkname", v] => {
                let name = checked_network_name(v)?;
                self.buffer_mut(ctx)?.network_name = name;
                Ok(Vec::new())
            }
            // cli_dataset.cpp `Dataset::ParseMeshLocalPrefix`: an IPv6 address whose first 8
            // bytes become the prefix (`fdde:ad00:beef:0::`).
            ["meshlocalprefix", v] => {
                let addr = parse_ip6(v)?.octets();
                if let Some(prefix) = addr.first_chunk::<8>() {
                    self.buffer_mut(ctx)?.mesh_local_prefix = *prefix;
                }
                Ok(Vec::new())
            }
            _ => Err(OtError::InvalidCommand),
        }
    }

    /// The dataset buffer; a field set before `dataset init` starts from the active dataset.
    fn buffer_mut(&mut self, ctx: &Context<'_>) -> Result<&mut ActiveDataset, OtError> {
        Ok(self
            .dataset_buffer
            .get_or_insert_with(|| ctx.stack.dataset().clone()))
    }

    // -- ping (cli.cpp ProcessPing / HandlePingReply / HandlePingStatistics) --

    /// `ping [-I <src>] <addr> [size] [count] [interval] [hoplimit] [timeout]`.
    fn ping(&mut self, args: &[&str], ctx: &mut Context<'_>) -> Reply {
        if let ["stop", ..] = args {
            // cli.cpp `Process<Cmd("ping")>`: `otPingSenderStop`, then Done.
            ctx.stack.ping_stop();
            return Reply::from_result(Ok(Vec::new()));
        }
        let result = (|| -> Result<(), OtError> {
            let mut args = args;
            let mut src = None;
            if let ["-I", s, rest @ ..] = args {
                src = Some(parse_ip6(s)?);
                args = rest;
            }
            let mut request = PingRequest::new(parse_ip6(args.first().copied().unwrap_or(""))?);
            request.src = src;
            if let Some(v) = args.get(1) {
                request.size = parse_u16(v)?;
            }
            if let Some(v) = args.get(2) {
                request.count = parse_u16(v)?;
            }
            if let Some(v) = args.get(3) {
                request.interval = parse_interval(v)?;
            }
            if let Some(v) = args.get(4) {
                request.hop_limit = parse_u8(v)?;
            }
            if let Some(t) = args.get(5) {
                // Milliseconds, at most u16::MAX (OpenThread's `mTimeout` is a uint16_t).
                let timeout = parse_interval(t)?;
                if timeout.as_millis() > u128::from(u16::MAX) {
                    return Err(OtError::InvalidArgs);
                }
                request.timeout = timeout;
            }
            if args.len() > 6 {
                return Err(OtError::InvalidArgs);
            }
            // The stack refuses a source that is not one of this node's addresses.
            ctx.stack.ping_request(ctx.now, &request)
        })();
        match result {
            Ok(()) => {
                self.ping_total_ms = 0;
                Reply::new(Vec::new(), Outcome::Pending)
            }
            Err(e) => Reply::from_result(Err(e)),
        }
    }

    // -- coap (cli_coap.cpp) --

    fn coap(&mut self, args: &[&str], ctx: &mut Context<'_>) -> Result<Vec<String>, OtError> {
        const SUBCOMMANDS: &[&str] = &[
            "delete",
            "get",
            "parameters",
            "post",
            "put",
            "resource",
            "set",
            "start",
            "stop",
        ];
        match args {
            [] => Err(OtError::InvalidArgs),
            ["help"] => Ok(SUBCOMMANDS.iter().map(|c| c.to_string()).collect()),
            ["start", ..] => {
                if !self.coap.is_started() {
                    match ctx.stack.udp_open(COAP_PORT) {
                        Ok(()) | Err(OtError::Already) => {}
                        Err(e) => return Err(e),
                    }
                    self.coap.start();
                }
                Ok(Vec::new())
            }
            ["stop", ..] => {
                self.coap.stop();
                ctx.stack.udp_close(COAP_PORT);
                Ok(Vec::new())
            }
            ["resource"] => self.coap.resource(None),
            ["resource", uri, ..] => self.coap.resource(Some(uri)),
            ["set"] => self.coap.set(None),
            ["set", content, ..] => self.coap.set(Some(content)),
            [method @ ("get" | "put" | "post" | "delete"), rest @ ..] => {
                let method = match *method {
                    "get" => RequestType::Get,
                    "put" => RequestType::Put,
                    "post" => RequestType::Post,
                    _ => RequestType::Delete,
                };
                let dst = parse_ip6(rest.first().copied().unwrap_or(""))?;
                let uri = rest.get(1).copied().ok_or(OtError::InvalidArgs)?;
                let confirmable = rest.get(2) == Some(&"con");
                let payload = rest.get(3).map(|p| p.as_bytes()).unwrap_or_default();
                let peer = SocketAddrV6::new(dst, COAP_PORT, 0, 0);
                let message_id = self.coap.next_message_id();
                let actions =
                    self.coap
                        .request(ctx.now, method, peer, uri, confirmable, payload)?;
                for (to, bytes) in &actions.sends {
                    if let Err(e) = ctx.stack.udp_send(ctx.now, COAP_PORT, *to, bytes) {
                        self.coap.abandon(message_id);
                        return Err(e);
                    }
                }
                Ok(actions.lines)
            }
            _ => Err(OtError::InvalidCommand),
        }
    }

    /// Give the CLI the image's CoAP Secure build (its Kconfig decides what `coaps` can do).
    pub fn enable_coaps(&mut self, build: CoapsBuild) {
        self.coaps = Some(CoapsApp::new(build));
    }

    /// Engine transcripts of this boot's CoAPS sessions.
    pub fn coaps_transcripts(&self) -> Vec<ot_hil_dtls::Transcript> {
        self.coaps
            .as_ref()
            .map(CoapsApp::transcripts)
            .unwrap_or_default()
    }

    /// NSS key-log lines of this boot's CoAPS sessions.
    pub fn coaps_key_log(&self) -> Vec<String> {
        self.coaps
            .as_ref()
            .map(CoapsApp::key_log)
            .unwrap_or_default()
    }

    fn coaps(&mut self, args: &[&str], ctx: &mut Context<'_>) -> Reply {
        let Some(app) = self.coaps.as_mut() else {
            return Reply::from_result(Err(OtError::InvalidCommand));
        };
        match app.execute(args, ctx.stack, ctx.now) {
            CoapsResult::Done(lines) => Reply::new(lines, Outcome::Done),
            CoapsResult::Error(lines, e) => Reply::new(lines, Outcome::Error(e)),
            CoapsResult::AssertReset(lines) => {
                Reply::new(lines, Outcome::Reboot { factory: false })
            }
        }
    }

    /// Turn stack events into console lines (ping replies and summary, CoAP traffic).
    pub fn handle_events(
        &mut self,
        events: Vec<NetEvent>,
        stack: &mut Stack,
        now: Instant,
    ) -> AsyncOutput {
        let mut out = AsyncOutput::default();
        for ev in events {
            match ev {
                NetEvent::RoleChanged(role) => {
                    out.attached |= matches!(role, Role::Child | Role::Router | Role::Leader);
                }
                NetEvent::PingReply {
                    from,
                    size,
                    seq,
                    hop_limit,
                    rtt,
                } => {
                    let ms = rtt.as_millis();
                    self.ping_total_ms += u64::try_from(ms).unwrap_or(u64::MAX);
                    // OpenThread counts the 8-byte ICMPv6 header in the size it prints.
                    out.lines.push(format!(
                        "{} bytes from {}: icmp_seq={seq} hlim={hop_limit} time={ms}ms",
                        u32::from(size) + 8,
                        ot_ip6(&from)
                    ));
                }
                NetEvent::PingDone {
                    sent,
                    received,
                    rtt_min,
                    rtt_max,
                    ..
                } => {
                    out.lines.push(ping_statistics(
                        sent,
                        received,
                        rtt_min,
                        self.ping_total_ms,
                        rtt_max,
                    ));
                    out.lines.push("Done".to_string());
                    out.finished_pending = true;
                }
                NetEvent::Udp { src, dst, payload } => {
                    if dst.port() == COAP_PORT {
                        let actions = self.coap.handle_datagram(now, src, &payload);
                        out.lines.extend(send_all(stack, now, actions));
                    } else if dst.port() == COAPS_PORT
                        && let Some(app) = self.coaps.as_mut()
                    {
                        out.lines
                            .extend(app.handle_datagram(src, &payload, stack, now));
                    }
                }
            }
        }
        out
    }

    /// CoAP retransmissions and timeouts.
    pub fn poll(&mut self, stack: &mut Stack, now: Instant) -> Vec<String> {
        let actions = self.coap.poll(now);
        let mut lines = send_all(stack, now, actions);
        if let Some(app) = self.coaps.as_mut() {
            lines.extend(app.poll(stack, now));
        }
        lines
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let coaps = self.coaps.as_ref().and_then(CoapsApp::next_deadline);
        [self.coap.next_deadline(), coaps]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Send what the CoAP app produced; its lines follow. A response that cannot be sent is
/// reported as OpenThread does (`coap send response error N: Name`) instead of "coap response sent".
fn send_all(stack: &mut Stack, now: Instant, actions: CoapActions) -> Vec<String> {
    let mut failure = None;
    for (to, bytes) in &actions.sends {
        if let Err(e) = stack.udp_send(now, COAP_PORT, *to, bytes) {
            failure = Some(e);
        }
    }
    actions
        .lines
        .into_iter()
        .map(|l| match failure {
            Some(e) if l == "coap response sent" => {
                format!("coap send response error {}", error_text(e))
            }
            _ => l,
        })
        .collect()
}

/// `%u packets transmitted, %u packets received.` then, as OpenThread computes them, the loss
/// in per-mille printed as `x.y%` and the round trip with the average printed as
/// `<avg/1000>.<avg%1000>` of a microsecond-scaled value (so 22.5 ms prints as `22.500`).
fn ping_statistics(
    sent: u16,
    received: u16,
    min: Duration,
    total_ms: u64,
    max: Duration,
) -> String {
    let mut s = format!("{sent} packets transmitted, {received} packets received.");
    if sent != 0 && received <= sent {
        let loss = 1000 * u32::from(sent - received) / u32::from(sent);
        let _ = write!(s, " Packet loss = {}.{}%.", loss / 10, loss % 10);
    }
    if received != 0 {
        let avg = 1000 * total_ms / u64::from(received);
        let _ = write!(
            s,
            " Round-trip min/avg/max = {}/{}.{}/{} ms.",
            min.as_millis(),
            avg / 1000,
            avg % 1000,
            max.as_millis()
        );
    }
    s
}

fn state(args: &[&str], ctx: &mut Context<'_>) -> Result<Vec<String>, OtError> {
    match args {
        [] => Ok(vec![ctx.stack.role().to_string()]),
        _ => Err(OtError::InvalidArgs),
    }
}

fn extaddr(args: &[&str], ctx: &mut Context<'_>) -> Result<Vec<String>, OtError> {
    match args {
        [] => Ok(vec![hex::encode(ctx.stack.ext_addr())]),
        [v] => {
            let ext = parse_hex_array::<8>(v)?;
            ctx.stack.set_ext_addr(ext).map(|_| Vec::new())
        }
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
        [] => Ok(vec![hex::encode(ctx.stack.dataset().ext_pan_id)]),
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
        [] => Ok(vec![hex::encode(ctx.stack.dataset().network_key)]),
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

/// `mac retries direct|indirect [n]` (cli.cpp `Process<Cmd("mac")>` with `ProcessGetSet`: no
/// value prints it, one value sets it, anything else is InvalidArgs).
fn mac(args: &[&str], ctx: &mut Context<'_>) -> Result<Vec<String>, OtError> {
    let direct = match args {
        ["retries", "direct", ..] => true,
        ["retries", "indirect", ..] => false,
        ["retries", ..] => return Err(OtError::InvalidArgs),
        _ => return Err(OtError::InvalidCommand),
    };
    let stack = &mut *ctx.stack;
    match &args[2..] {
        [] if direct => Ok(vec![stack.max_frame_retries_direct().to_string()]),
        [] => Ok(vec![stack.max_frame_retries_indirect().to_string()]),
        [v] => {
            let retries = parse_u8(v)?;
            if direct {
                stack.set_max_frame_retries_direct(retries);
            } else {
                stack.set_max_frame_retries_indirect(retries);
            }
            Ok(Vec::new())
        }
        _ => Err(OtError::InvalidArgs),
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

/// `dataset active` lines (cli_dataset.cpp `OutputDataset` order and formats).
fn dataset_lines(ds: &ActiveDataset) -> Vec<String> {
    let p = &ds.mesh_local_prefix;
    let group = |i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
    vec![
        format!("Active Timestamp: {}", ds.active_timestamp),
        format!("Channel: {}", ds.channel),
        format!("Channel Mask: 0x{:08x}", ds.channel_mask),
        format!("Ext PAN ID: {}", hex::encode(ds.ext_pan_id)),
        // OutputIp6Prefix of a mesh-local prefix: four groups then `::/64`.
        format!(
            "Mesh Local Prefix: {:x}:{:x}:{:x}:{:x}::/64",
            group(0),
            group(2),
            group(4),
            group(6)
        ),
        format!("Network Key: {}", hex::encode(ds.network_key)),
        format!("Network Name: {}", ds.network_name),
        format!("PAN ID: 0x{:04x}", ds.pan_id),
        format!("PSKc: {}", hex::encode(ds.pskc)),
        format!("Security Policy: {}", security_policy(&ds.security_policy)),
    ]
}

/// `OutputSecurityPolicy`: rotation time, then one letter per enabled flag. In the TLV the
/// Thread 1.2 flags C, e, p (byte 0 bits 2..0) and R (byte 1 bit 7) are set when *disabled*.
fn security_policy(sp: &SecurityPolicy) -> String {
    let b0 = sp.flags.first().copied().unwrap_or(0);
    let b1 = sp.flags.get(1).copied().unwrap_or(0xff);
    let mut s = format!("{} ", sp.rotation_hours);
    for (on, letter) in [
        (b0 & 0x80 != 0, 'o'),
        (b0 & 0x40 != 0, 'n'),
        (b0 & 0x20 != 0, 'r'),
        (b0 & 0x10 != 0, 'c'),
        (b0 & 0x04 == 0, 'C'),
        (b0 & 0x02 == 0, 'e'),
        (b0 & 0x01 == 0, 'p'),
        (b1 & 0x80 == 0, 'R'),
    ] {
        if on {
            s.push(letter);
        }
    }
    s
}

/// `ParseAsIp6Address`.
fn parse_ip6(v: &str) -> Result<Ipv6Addr, OtError> {
    v.parse().map_err(|_| OtError::InvalidArgs)
}

/// `ParsePingInterval`: seconds with up to three decimals -> duration.
fn parse_interval(v: &str) -> Result<Duration, OtError> {
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (whole.is_empty() && frac.is_empty())
    {
        return Err(OtError::InvalidArgs);
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| OtError::InvalidArgs)?
    };
    let frac_ms: u64 = format!("{frac:0<3}")
        .parse()
        .map_err(|_| OtError::InvalidArgs)?;
    let ms = whole
        .checked_mul(1000)
        .and_then(|m| m.checked_add(frac_ms))
        .ok_or(OtError::InvalidArgs)?;
    if ms > u64::from(u32::MAX) {
        return Err(OtError::InvalidArgs);
    }
    Ok(Duration::from_millis(ms))
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
    parse_uint(v, u64::from(u8::MAX)).map(|n| n as u8)
}

pub(crate) fn parse_u16(v: &str) -> Result<u16, OtError> {
    parse_uint(v, u64::from(u16::MAX)).map(|n| n as u16)
}

/// Exactly N bytes of hex (`ParseAsHexString` with a fixed size).
fn parse_hex_array<const N: usize>(v: &str) -> Result<[u8; N], OtError> {
    let bytes = parse_hex(v)?;
    bytes.try_into().map_err(|_| OtError::InvalidArgs)
}

/// Even-length hex string -> bytes.
pub fn parse_hex(v: &str) -> Result<Vec<u8>, OtError> {
    hex::decode(v).map_err(|_| OtError::InvalidArgs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ActiveDataset {
        ActiveDataset {
            active_timestamp: 0,
            channel: 11,
            channel_mask: 0x07ff_f800,
            pan_id: 0xabcd,
            ext_pan_id: [0xde, 0xad, 0x00, 0xbe, 0xef, 0x00, 0xca, 0xfe],
            network_name: "ot_zephyr".into(),
            network_key: [
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff,
            ],
            mesh_local_prefix: [0xfd, 0xde, 0xad, 0x00, 0xbe, 0xef, 0x00, 0x00],
            pskc: [0; 16],
            security_policy: SecurityPolicy::default(),
        }
    }

    fn run(cli: &mut Cli, stack: &mut Stack, line: &str) -> (Vec<String>, Option<String>) {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        let mut ctx = Context {
            stack,
            now: Instant::now(),
            active_dataset: true,
        };
        let reply = cli.execute(&args, &mut ctx);
        let result = reply.result_line();
        (reply.lines, result)
    }

    #[test]
    fn parse_hex_takes_only_hex_digits() {
        assert_eq!(parse_hex("0aFf"), Ok(vec![0x0a, 0xff]));
        assert_eq!(parse_hex(""), Ok(vec![]));
        for bad in ["abc", "+f0a", "-1", "0x", "é1", "zz"] {
            assert_eq!(parse_hex(bad), Err(OtError::InvalidArgs), "{bad:?}");
        }
    }

    #[test]
    fn mac_retries_are_read_and_set_like_openthread() {
        let mut stack = Stack::new([1, 2, 3, 4, 5, 6, 7, 8], None, defaults());
        let mut cli = Cli::new();
        let done = Some("Done".to_string());
        assert_eq!(
            run(&mut cli, &mut stack, "mac retries direct"),
            (vec!["15".into()], done.clone())
        );
        assert_eq!(
            run(&mut cli, &mut stack, "mac retries direct 0"),
            (vec![], done.clone())
        );
        assert_eq!(stack.max_frame_retries_direct(), 0);
        assert_eq!(
            run(&mut cli, &mut stack, "mac retries indirect"),
            (vec!["0".into()], done.clone())
        );
        assert_eq!(run(&mut cli, &mut stack, "mac retries indirect 3").1, done);
        assert_eq!(stack.max_frame_retries_indirect(), 3);
        for bad in [
            "mac retries direct 256",
            "mac retries direct x",
            "mac retries direct 1 2",
            "mac retries",
            "mac retries both",
        ] {
            assert_eq!(
                run(&mut cli, &mut stack, bad).1.as_deref(),
                Some("Error 7: InvalidArgs"),
                "{bad}"
            );
        }
        assert_eq!(
            run(&mut cli, &mut stack, "mac").1.as_deref(),
            Some("Error 35: InvalidCommand")
        );
        assert_eq!(
            stack.max_frame_retries_direct(),
            0,
            "bad input changes nothing"
        );
    }

    #[test]
    fn getters_print_openthread_formats() {
        let mut stack = Stack::new([1, 2, 3, 4, 5, 6, 7, 8], None, defaults());
        let mut cli = Cli::new();
        let done = Some("Done".to_string());
        assert_eq!(
            run(&mut cli, &mut stack, "state"),
            (vec!["disabled".into()], done.clone())
        );
        assert_eq!(
            run(&mut cli, &mut stack, "channel"),
            (vec!["11".into()], done.clone())
        );
        assert_eq!(
            run(&mut cli, &mut stack, "panid"),
            (vec!["0xabcd".into()], done.clone())
        );
        assert_eq!(
            run(&mut cli, &mut stack, "extpanid"),
            (vec!["dead00beef00cafe".into()], done.clone())
        );
        assert_eq!(
            run(&mut cli, &mut stack, "networkname"),
            (vec!["ot_zephyr".into()], done.clone())
        );
        assert_eq!(
            run(&mut cli, &mut stack, "networkkey"),
            (
                vec!["00112233445566778899aabbccddeeff".into()],
                done.clone()
            )
        );
        assert_eq!(
            run(&mut cli, &mut stack, "ifconfig"),
            (vec!["down".into()], done.clone())
        );
        assert_eq!(
            run(&mut cli, &mut stack, "rloc16"),
            (vec!["fffe".into()], done.clone())
        );
        let (ext, _) = run(&mut cli, &mut stack, "extaddr");
        assert_eq!(ext, vec![hex::encode(stack.ext_addr())]);
        assert_eq!(ext[0].len(), 16);
        let (ds, _) = run(&mut cli, &mut stack, "dataset active");
        assert_eq!(
            ds,
            vec![
                "Active Timestamp: 0",
                "Channel: 11",
                "Channel Mask: 0x07fff800",
                "Ext PAN ID: dead00beef00cafe",
                "Mesh Local Prefix: fdde:ad00:beef:0::/64",
                "Network Key: 00112233445566778899aabbccddeeff",
                "Network Name: ot_zephyr",
                "PAN ID: 0xabcd",
                "PSKc: 00000000000000000000000000000000",
                "Security Policy: 672 onrc",
            ]
        );
    }

    #[test]
    fn setters_and_errors() {
        let mut stack = Stack::new([1; 8], None, defaults());
        let mut cli = Cli::new();
        let done = Some("Done".to_string());
        assert_eq!(run(&mut cli, &mut stack, "channel 15").1, done);
        assert_eq!(run(&mut cli, &mut stack, "channel").0, vec!["15"]);
        assert_eq!(run(&mut cli, &mut stack, "panid 0x1234").1, done);
        assert_eq!(run(&mut cli, &mut stack, "panid").0, vec!["0x1234"]);
        assert_eq!(
            run(
                &mut cli,
                &mut stack,
                "networkkey 000102030405060708090a0b0c0d0e0f"
            )
            .1,
            done
        );
        assert_eq!(
            run(&mut cli, &mut stack, "networkkey").0,
            vec!["000102030405060708090a0b0c0d0e0f"]
        );
        assert_eq!(
            run(&mut cli, &mut stack, "networkkey 0011").1.as_deref(),
            Some("Error 7: InvalidArgs")
        );
        assert_eq!(
            run(&mut cli, &mut stack, "channel 27").1.as_deref(),
            Some("Error 7: InvalidArgs")
        );
        assert_eq!(
            run(&mut cli, &mut stack, "networkname abcdefghijklmnopq")
                .1
                .as_deref(),
            Some("Error 7: InvalidArgs")
        );
        assert_eq!(
            run(&mut cli, &mut stack, "bogus").1.as_deref(),
            Some("Error 35: InvalidCommand")
        );
        assert_eq!(
            run(&mut cli, &mut stack, "thread start").1.as_deref(),
            Some("Error 13: InvalidState")
        );
        assert_eq!(run(&mut cli, &mut stack, "ifconfig up").1, done);
        assert_eq!(run(&mut cli, &mut stack, "ifconfig").0, vec!["up"]);
        assert_eq!(run(&mut cli, &mut stack, "thread start").1, done);
        assert_eq!(run(&mut cli, &mut stack, "state").0, vec!["detached"]);
        // Changing the dataset while Thread runs is refused.
        assert_eq!(
            run(&mut cli, &mut stack, "channel 20").1.as_deref(),
            Some("Error 13: InvalidState")
        );
        assert_eq!(
            run(&mut cli, &mut stack, "ping fdde::1").1,
            None,
            "ping is pending"
        );
        assert_eq!(
            run(&mut cli, &mut stack, "ping nonsense").1.as_deref(),
            Some("Error 7: InvalidArgs")
        );
        assert_eq!(
            run(&mut cli, &mut stack, "ping fdde::2").1.as_deref(),
            Some("Error 5: Busy"),
            "one ping at a time"
        );
        assert_eq!(run(&mut cli, &mut stack, "ping stop").1, done);
        assert_eq!(
            run(&mut cli, &mut stack, "ping -I fdde::9 fdde::2")
                .1
                .as_deref(),
            Some("Error 7: InvalidArgs"),
            "a source that is not ours"
        );
        assert_eq!(
            run(&mut cli, &mut stack, "ping fdde::2 8 1 1 64 5").1,
            None,
            "stopped: a new ping starts"
        );
        assert_eq!(
            run(&mut cli, &mut stack, "coap").1.as_deref(),
            Some("Error 7: InvalidArgs")
        );
        assert_eq!(
            run(&mut cli, &mut stack, "coap frob").1.as_deref(),
            Some("Error 35: InvalidCommand")
        );
        assert_eq!(run(&mut cli, &mut stack, "coap set").0, vec!["0"]);
        assert_eq!(
            run(&mut cli, &mut stack, "coap get fdde::1 x").1.as_deref(),
            Some("Error 13: InvalidState"),
            "not started"
        );
        assert_eq!(
            run(&mut cli, &mut stack, "coap start").1.as_deref(),
            Some("Done")
        );
        assert_eq!(
            run(&mut cli, &mut stack, "coap get fdde::1").1.as_deref(),
            Some("Error 7: InvalidArgs"),
            "no uri"
        );
        assert_eq!(
            run(&mut cli, &mut stack, "coap get nonsense x")
                .1
                .as_deref(),
            Some("Error 7: InvalidArgs")
        );
        let (_, r) = run(&mut cli, &mut stack, "coap get fdde::1 x con");
        if r.as_deref() != Some("Done") {
            // Detached: the stack refuses to send, and no response is awaited.
            assert!(cli.next_deadline().is_none(), "{r:?}");
        }
    }

    #[test]
    fn dataset_buffer_commit_and_tlvs() {
        let mut stack = Stack::new([2; 8], None, defaults());
        let mut cli = Cli::new();
        assert_eq!(
            run(&mut cli, &mut stack, "dataset init new").1.as_deref(),
            Some("Done")
        );
        assert_eq!(
            run(&mut cli, &mut stack, "dataset channel 19").1.as_deref(),
            Some("Done")
        );
        assert_eq!(
            run(&mut cli, &mut stack, "dataset commit active")
                .1
                .as_deref(),
            Some("Done")
        );
        assert_eq!(run(&mut cli, &mut stack, "channel").0, vec!["19"]);
        let (tlvs, _) = run(&mut cli, &mut stack, "dataset active -x");
        assert_eq!(tlvs, vec![hex::encode(stack.dataset().to_tlvs())]);
        let committed = stack.dataset().clone();
        let mut other = Stack::new([3; 8], None, defaults());
        assert_eq!(
            run(
                &mut cli,
                &mut other,
                &format!("dataset set active {}", tlvs[0])
            )
            .1
            .as_deref(),
            Some("Done")
        );
        assert_eq!(other.dataset(), &committed);
        assert_eq!(
            run(&mut cli, &mut other, "dataset set active zz")
                .1
                .as_deref(),
            Some("Error 7: InvalidArgs")
        );
    }

    #[test]
    fn no_active_dataset_before_commit_or_attach() {
        let mut stack = Stack::new([5; 8], None, defaults());
        let mut cli = Cli::new();
        for line in ["dataset active", "dataset active -x", "dataset init active"] {
            let args: Vec<String> = line.split_whitespace().map(String::from).collect();
            let mut ctx = Context {
                stack: &mut stack,
                now: Instant::now(),
                active_dataset: false,
            };
            assert_eq!(
                cli.execute(&args, &mut ctx).result_line().as_deref(),
                Some("Error 23: NotFound"),
                "{line}"
            );
        }
    }

    #[test]
    fn ping_statistics_format() {
        let ms = Duration::from_millis;
        assert_eq!(
            ping_statistics(1, 1, ms(22), 22, ms(22)),
            "1 packets transmitted, 1 packets received. Packet loss = 0.0%. Round-trip min/avg/max = 22/22.0/22 ms."
        );
        assert_eq!(
            ping_statistics(2, 2, ms(20), 45, ms(25)),
            "2 packets transmitted, 2 packets received. Packet loss = 0.0%. Round-trip min/avg/max = 20/22.500/25 ms."
        );
        assert_eq!(
            ping_statistics(3, 0, ms(0), 0, ms(0)),
            "3 packets transmitted, 0 packets received. Packet loss = 100.0%."
        );
        assert_eq!(
            ping_statistics(3, 2, ms(1), 3, ms(2)),
            "3 packets transmitted, 2 packets received. Packet loss = 33.3%. Round-trip min/avg/max = 1/1.500/2 ms."
        );
    }

    #[test]
    fn ping_reply_line_counts_icmp_header() {
        let mut stack = Stack::new([4; 8], None, defaults());
        let mut cli = Cli::new();
        let from: Ipv6Addr = "fdde:ad00:beef::ff:fe00:800".parse().unwrap();
        let out = cli.handle_events(
            vec![
                NetEvent::PingReply {
                    from,
                    size: 8,
                    seq: 1,
                    hop_limit: 64,
                    rtt: Duration::from_millis(3),
                },
                NetEvent::PingDone {
                    sent: 1,
                    received: 1,
                    rtt_min: Duration::from_millis(3),
                    rtt_avg: Duration::from_millis(3),
                    rtt_max: Duration::from_millis(3),
                },
            ],
            &mut stack,
            Instant::now(),
        );
        assert_eq!(
            out.lines,
            vec![
                "16 bytes from fdde:ad00:beef:0:0:ff:fe00:800: icmp_seq=1 hlim=64 time=3ms",
                "1 packets transmitted, 1 packets received. Packet loss = 0.0%. Round-trip min/avg/max = 3/3.0/3 ms.",
                "Done",
            ]
        );
        assert!(out.finished_pending);
    }

    #[test]
    fn helpers() {
        assert_eq!(parse_interval("1").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_interval("0.25").unwrap(), Duration::from_millis(250));
        assert!(parse_interval("1.2345").is_err());
        assert!(parse_interval("x").is_err());
        assert!(parse_interval("").is_err());
        assert_eq!(parse_u16("0x10").unwrap(), 16);
        assert!(parse_u8("256").is_err());
        assert_eq!(
            security_policy(&SecurityPolicy {
                rotation_hours: 672,
                flags: vec![0xf0]
            }),
            "672 onrcCep"
        );
        assert_eq!(
            security_policy(&SecurityPolicy {
                rotation_hours: 1,
                flags: vec![0xff]
            }),
            "1 onrc"
        );
        assert_eq!(ot_ip6(&"fe80::1".parse().unwrap()), "fe80:0:0:0:0:0:0:1");
    }
}
