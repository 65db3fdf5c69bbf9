//! Firmware variants: the manifest (`firmware/variants/<name>.toml`) and its Kconfig fragments.
//!
//! A virtual DK has no image to execute; "flashing" it means loading a manifest that names the
//! console profile, the boot banner and the Kconfig fragments the real image was built from. The
//! Kconfig symbols the model understands change its behaviour (default channel, PAN ID, prompt
//! colours, command buffer size, ...). Every other symbol is kept and reported by
//! [`Kconfig::warnings`]: a fragment that sets something the model does not emulate must say so
//! instead of silently behaving like the default build.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Errors loading a firmware variant.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse manifest {path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{path}:{line}: bad kconfig line: {message}")]
    Kconfig {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// What the image does once booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Application {
    /// nRF Connect SDK `samples/openthread/cli` (or an upstream OpenThread CLI build).
    ThreadCli,
    /// nRF 802.15.4 sniffer firmware (`sniffer_app`).
    #[serde(rename = "sniffer-802154")]
    Sniffer802154,
}

pub use crate::Profile;

/// How the real image is built (used by real boards; carried through for the runner).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BuildInfo {
    pub ncs: Option<String>,
    pub board: Option<String>,
    pub sample: Option<String>,
    pub hex: Option<PathBuf>,
    /// The build folder (`west build -d DIR`), where the image's partition layout is read
    /// (`partitions.yml`, `zephyr/zephyr.dts`); default: the folder above `hex` when `hex` is
    /// `<DIR>/zephyr/zephyr.hex`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

/// A variant whose boards are processes of a program on the host (upstream OpenThread's
/// simulation CLI), not virtual DKs: the `[program]` table of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostProgram {
    /// Script that builds the program (resolved against the manifest's directory).
    pub build: PathBuf,
    /// The program (resolved against the manifest's directory).
    pub path: PathBuf,
    /// Its arguments; `{node-id}` stands for the board's node id.
    pub args: Vec<String>,
    /// What it is built from (the build script records the same in a file next to the program).
    pub version: String,
    /// The same program built for virtual time (its timers, radio and console driven by an
    /// event dispatcher: the case clock), when the build script makes one.
    #[serde(default)]
    pub virtual_time_path: Option<PathBuf>,
}

/// The manifest file as written (raw serde form).
#[derive(Debug, Deserialize)]
struct ManifestFile {
    name: String,
    #[serde(default)]
    description: String,
    application: Application,
    profile: Profile,
    #[serde(default)]
    banner: Vec<String>,
    #[serde(default)]
    kconfig: Vec<PathBuf>,
    build: Option<BuildInfo>,
    program: Option<HostProgram>,
}

/// A loaded, validated firmware variant.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Absolute (or as given) path of the manifest file.
    pub path: PathBuf,
    pub name: String,
    pub description: String,
    pub application: Application,
    pub profile: Profile,
    /// Lines printed at boot, before the shell starts.
    pub banner: Vec<String>,
    /// Kconfig fragment paths, resolved against the manifest's directory, in merge order.
    pub kconfig_files: Vec<PathBuf>,
    pub build: Option<BuildInfo>,
    /// `Some`: boards of this variant are processes of a host program (paths resolved), which
    /// virtual boards cannot stand in for.
    pub program: Option<HostProgram>,
    /// Merged symbols of all fragments (later fragments override earlier ones).
    pub kconfig: Kconfig,
    image_hash: String,
}

impl Manifest {
    /// Read the manifest and every Kconfig fragment it names.
    pub fn load(path: &Path) -> Result<Manifest, FirmwareError> {
        let manifest_bytes = read(path)?;
        let text = std::str::from_utf8(&manifest_bytes).map_err(|_| FirmwareError::Manifest {
            path: path.to_path_buf(),
            message: "not utf-8".into(),
        })?;
        let raw: ManifestFile = toml::from_str(text).map_err(|e| FirmwareError::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if raw.name.trim().is_empty() {
            return Err(FirmwareError::Manifest {
                path: path.to_path_buf(),
                message: "name is empty".into(),
            });
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        // Image hash = sha256(manifest bytes || fragment bytes...), so editing any fragment makes
        // the runner reflash, exactly like a rebuilt hex would.
        let mut hasher = Sha256::new();
        hasher.update(&manifest_bytes);
        let mut kconfig = Kconfig::default();
        let mut kconfig_files = Vec::with_capacity(raw.kconfig.len());
        for rel in &raw.kconfig {
            let frag_path = dir.join(rel);
            let bytes = read(&frag_path)?;
            hasher.update(&bytes);
            let frag_text = String::from_utf8_lossy(&bytes);
            kconfig.merge_fragment(&frag_path, &frag_text)?;
            kconfig_files.push(frag_path);
        }
        let image_hash = hex::encode(hasher.finalize());
        Ok(Manifest {
            path: path.to_path_buf(),
            name: raw.name,
            description: raw.description,
            application: raw.application,
            profile: raw.profile,
            banner: raw.banner,
            kconfig_files,
            build: raw.build,
            program: raw.program.map(|p| HostProgram {
                build: dir.join(p.build),
                path: dir.join(p.path),
                virtual_time_path: p.virtual_time_path.map(|v| dir.join(v)),
                ..p
            }),
            kconfig,
            image_hash,
        })
    }

    /// SHA-256 over the manifest bytes and every Kconfig fragment's bytes, in order; lowercase hex.
    pub fn image_hash(&self) -> String {
        self.image_hash.clone()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, FirmwareError> {
    std::fs::read(path).map_err(|source| FirmwareError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A Kconfig symbol value as written in a `.conf` fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KconfigValue {
    /// `=y` / `=n` / `# CONFIG_X is not set`.
    Bool(bool),
    /// Decimal or `0x` hex integer.
    Int(i64),
    /// Quoted string (escapes `\"` and `\\` resolved).
    Str(String),
}

impl fmt::Display for KconfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KconfigValue::Bool(true) => f.write_str("y"),
            KconfigValue::Bool(false) => f.write_str("n"),
            KconfigValue::Int(i) => write!(f, "{i}"),
            KconfigValue::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// What kind of value a known symbol takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolKind {
    Bool,
    Int,
    Str,
}

/// A Kconfig symbol the virtual DK knows: its type, the default of the real build, and what it
/// does in the model.
#[derive(Debug, Clone, Copy)]
pub struct KnownSymbol {
    pub name: &'static str,
    pub kind: SymbolKind,
    /// Default as text in `.conf` syntax (`y`, `n`, `11`, `"uart:~$ "`).
    pub default: &'static str,
    /// Whether the model's behaviour depends on it (otherwise it is accepted as a build option
    /// that does not change what the console shows).
    pub modelled: bool,
    pub meaning: &'static str,
}

/// Symbols the model knows. Defaults of modelled symbols are the Zephyr/NCS Kconfig defaults (see
/// firmware/README.md for which were read in the Kconfig sources and which are assumptions); the
/// defaults of accepted-but-not-modelled symbols are informational only and were not checked.
pub const KNOWN_SYMBOLS: &[KnownSymbol] = &[
    // -- modelled: change what the virtual DK does --
    KnownSymbol {
        name: "OPENTHREAD_CHANNEL",
        kind: SymbolKind::Int,
        default: "11",
        modelled: true,
        meaning: "default radio channel of the active dataset after factoryreset",
    },
    KnownSymbol {
        name: "OPENTHREAD_PANID",
        kind: SymbolKind::Int,
        default: "43981",
        modelled: true,
        meaning: "default PAN ID (43981 = 0xabcd)",
    },
    KnownSymbol {
        name: "OPENTHREAD_NETWORK_NAME",
        kind: SymbolKind::Str,
        default: "\"ot_zephyr\"",
        modelled: true,
        meaning: "default network name",
    },
    KnownSymbol {
        name: "OPENTHREAD_XPANID",
        kind: SymbolKind::Str,
        default: "\"de:ad:00:be:ef:00:ca:fe\"",
        modelled: true,
        meaning: "default extended PAN ID",
    },
    KnownSymbol {
        name: "OPENTHREAD_NETWORKKEY",
        kind: SymbolKind::Str,
        default: "\"00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff\"",
        modelled: true,
        meaning: "default network key",
    },
    KnownSymbol {
        name: "OPENTHREAD_MASTERKEY",
        kind: SymbolKind::Str,
        default: "\"00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff\"",
        modelled: true,
        meaning: "default network key (name before Zephyr 2.6)",
    },
    KnownSymbol {
        name: "OPENTHREAD_MESH_LOCAL_PREFIX",
        kind: SymbolKind::Str,
        default: "\"fdde:ad00:beef:0::\"",
        modelled: true,
        meaning: "default mesh-local prefix",
    },
    KnownSymbol {
        name: "OPENTHREAD_MANUAL_START",
        kind: SymbolKind::Bool,
        default: "y",
        modelled: true,
        meaning: "n: bring the interface up and start Thread at boot (Zephyr default n; the NCS CLI sample boots with Thread stopped)",
    },
    KnownSymbol {
        name: "SHELL_VT100_COLORS",
        kind: SymbolKind::Bool,
        default: "y",
        modelled: true,
        meaning: "colour the prompt and error lines with VT100 escapes",
    },
    KnownSymbol {
        name: "SHELL_VT100_COMMANDS",
        kind: SymbolKind::Bool,
        default: "y",
        modelled: true,
        meaning: "erase and redraw the command line around asynchronous output",
    },
    KnownSymbol {
        name: "SHELL_PROMPT_UART",
        kind: SymbolKind::Str,
        default: "\"uart:~$ \"",
        modelled: true,
        meaning: "shell prompt",
    },
    KnownSymbol {
        name: "SHELL_CMD_BUFF_SIZE",
        kind: SymbolKind::Int,
        default: "256",
        modelled: true,
        meaning: "longest command line the shell accepts",
    },
    KnownSymbol {
        name: "SHELL_HISTORY",
        kind: SymbolKind::Bool,
        default: "y",
        modelled: true,
        meaning: "command history on the up/down arrows and Ctrl+P/Ctrl+N",
    },
    KnownSymbol {
        name: "SHELL_HISTORY_BUFFER",
        kind: SymbolKind::Int,
        default: "512",
        modelled: true,
        meaning: "bytes of the history heap (oldest lines dropped when a new one does not fit)",
    },
    KnownSymbol {
        name: "KERNEL_SHELL",
        kind: SymbolKind::Bool,
        default: "y",
        modelled: true,
        meaning: "the `kernel` shell command (the model has its `reboot cold|warm`)",
    },
    KnownSymbol {
        name: "REBOOT",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: true,
        meaning: "sys_reboot(), and with it `kernel reboot` (NET_L2_OPENTHREAD selects it)",
    },
    KnownSymbol {
        name: "SHELL_ECHO_STATUS",
        kind: SymbolKind::Bool,
        default: "y",
        modelled: true,
        meaning: "echo typed characters",
    },
    KnownSymbol {
        name: "SHELL_ARGC_MAX",
        kind: SymbolKind::Int,
        default: "20",
        modelled: true,
        meaning: "most arguments one command line may have",
    },
    KnownSymbol {
        name: "OPENTHREAD_SHELL",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: true,
        meaning: "`ot` shell command (the OpenThread CLI)",
    },
    KnownSymbol {
        name: "LOG",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: true,
        meaning: "Zephyr logging: a fatal error prints its error lines (fault injection `crash`)",
    },
    KnownSymbol {
        name: "LOG_MODE_MINIMAL",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: true,
        meaning: "log through printk as `E: message`, without timestamp and module",
    },
    KnownSymbol {
        name: "LOG_MAX_LEVEL",
        kind: SymbolKind::Int,
        default: "4",
        modelled: true,
        meaning: "most verbose level compiled in (0 none, 1 errors, ... 4 debug)",
    },
    KnownSymbol {
        name: "RESET_ON_FATAL_ERROR",
        kind: SymbolKind::Bool,
        default: "y",
        modelled: true,
        meaning: "after a fatal error the board reboots (y) or halts (n) (NCS lib/fatal_error)",
    },
    KnownSymbol {
        name: "OPENTHREAD_COAP",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "OpenThread CoAP API (the NCS master feature set enables it)",
    },
    KnownSymbol {
        name: "OPENTHREAD_COAPS",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "OpenThread CoAP Secure API",
    },
    // -- accepted build options without a visible effect in the model --
    KnownSymbol {
        name: "SHELL",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: true,
        meaning: "Zephyr shell on the UART (without it the console shows only the banner)",
    },
    KnownSymbol {
        name: "NETWORKING",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "Zephyr networking",
    },
    KnownSymbol {
        name: "NET_L2_OPENTHREAD",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: true,
        meaning: "OpenThread L2 (selects REBOOT, so `kernel reboot` exists)",
    },
    KnownSymbol {
        name: "OPENTHREAD_NORDIC_LIBRARY_MASTER",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "Nordic prebuilt OpenThread libraries, full (master) feature set",
    },
    KnownSymbol {
        name: "OPENTHREAD_NORDIC_LIBRARY_FTD",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "Nordic prebuilt OpenThread libraries, FTD feature set",
    },
    KnownSymbol {
        name: "OPENTHREAD_FTD",
        kind: SymbolKind::Bool,
        default: "y",
        modelled: false,
        meaning: "full Thread device",
    },
    KnownSymbol {
        name: "OPENTHREAD_MTD",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "minimal Thread device",
    },
    KnownSymbol {
        name: "OPENTHREAD_THREAD_VERSION_1_1",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "Thread 1.1",
    },
    KnownSymbol {
        name: "OPENTHREAD_THREAD_VERSION_1_2",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "Thread 1.2",
    },
    KnownSymbol {
        name: "OPENTHREAD_THREAD_VERSION_1_3",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "Thread 1.3",
    },
    KnownSymbol {
        name: "OPENTHREAD_DEBUG",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "OpenThread stack logging",
    },
    KnownSymbol {
        name: "OPENTHREAD_L2_DEBUG",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "OpenThread L2 logging",
    },
    KnownSymbol {
        name: "OPENTHREAD_JOINER",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "joiner role",
    },
    KnownSymbol {
        name: "OPENTHREAD_COMMISSIONER",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "commissioner role",
    },
    KnownSymbol {
        name: "ASSERT",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: true,
        meaning: "asserts (OpenThread's OT_ASSERT follows it in Zephyr builds)",
    },
    KnownSymbol {
        name: "ASSERT_NO_COND_INFO",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "assert messages without the condition text",
    },
    KnownSymbol {
        name: "ASSERT_NO_MSG_INFO",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "assert messages without the message text",
    },
    KnownSymbol {
        name: "MBEDTLS_SHA1_C",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "mbedtls SHA-1",
    },
    // -- CoAP Secure (coaps.rs; defaults are the NCS 2.1/2.2 ones, the upstream profile has
    //    OpenThread's own: see CoapsBuild::from_kconfig and firmware/README.md) --
    KnownSymbol {
        name: "MBEDTLS_KEY_EXCHANGE_ECJPAKE_ENABLED",
        kind: SymbolKind::Bool,
        default: "y",
        modelled: true,
        meaning: "mbedtls EC J-PAKE key exchange and its hello extension 0x0100",
    },
    KnownSymbol {
        name: "MBEDTLS_KEY_EXCHANGE_PSK_ENABLED",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: true,
        meaning: "mbedtls PSK key exchange; gates the `coaps psk` command",
    },
    KnownSymbol {
        name: "MBEDTLS_KEY_EXCHANGE_ECDHE_ECDSA_ENABLED",
        kind: SymbolKind::Bool,
        default: "y",
        modelled: true,
        meaning: "mbedtls ECDHE-ECDSA key exchange; gates the `coaps x509` command",
    },
    KnownSymbol {
        name: "MBEDTLS_ECJPAKE_ALT",
        kind: SymbolKind::Bool,
        default: "y",
        modelled: true,
        meaning: "EC J-PAKE from Oberon's library (its check passes without a password)",
    },
    KnownSymbol {
        name: "MBEDTLS_HEAP_SIZE",
        kind: SymbolKind::Int,
        default: "10240",
        modelled: true,
        meaning: "mbedtls heap: parsed credentials plus the DTLS handshake must fit",
    },
    KnownSymbol {
        name: "MBEDTLS_SSL_CIPHERSUITES",
        kind: SymbolKind::Str,
        default: "\"\"",
        modelled: true,
        meaning: "mbedtls default suite list (comma-separated MBEDTLS_TLS_* names); reaches the session only with VDK_COAPS_SUITE_LIST=\"mbedtls\"",
    },
    KnownSymbol {
        name: "MBEDTLS_SSL_EXTENDED_MASTER_SECRET",
        kind: SymbolKind::Bool,
        default: "y",
        modelled: true,
        meaning: "RFC 7627 extended master secret, offered and taken by the DTLS session",
    },
    KnownSymbol {
        name: "MBEDTLS_SSL_ENCRYPT_THEN_MAC",
        kind: SymbolKind::Bool,
        default: "y",
        modelled: true,
        meaning: "RFC 7366 encrypt_then_mac offered in the ClientHello (unused by CCM-8 suites)",
    },
    KnownSymbol {
        name: "MBEDTLS_SHA512_C",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: true,
        meaning: "mbedtls SHA-512: ECDSA+SHA512 first in signature_algorithms (also defined by PSA_WANT_ALG_SHA_512)",
    },
    KnownSymbol {
        name: "PSA_WANT_ALG_SHA_512",
        kind: SymbolKind::Bool,
        default: "y",
        modelled: true,
        meaning: "PSA SHA-512; nrf_security then defines MBEDTLS_SHA512_C in the generated mbedtls config",
    },
    KnownSymbol {
        name: "MBEDTLS_SHA384_C",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: true,
        meaning: "mbedtls SHA-384: ECDSA+SHA384 in signature_algorithms and the CertificateRequest",
    },
    KnownSymbol {
        name: "VDK_COAPS_SUITE_LIST",
        kind: SymbolKind::Str,
        default: "\"openthread\"",
        modelled: true,
        meaning: "model: \"openthread\" = OpenThread's one-suite list; \"mbedtls\" = mbedtls' default list",
    },
    KnownSymbol {
        name: "VDK_DTLS_SUITE_PREFERENCE",
        kind: SymbolKind::Str,
        default: "\"server\"",
        modelled: true,
        meaning: "model: whose suite order the DTLS server follows (\"server\" as mbedtls, or \"client\")",
    },
    KnownSymbol {
        name: "VDK_DTLS_ECJPAKE_NEEDS_KKPP",
        kind: SymbolKind::Bool,
        default: "y",
        modelled: true,
        meaning: "model: the server selects EC J-PAKE only with a verified extension 0x0100 and a password",
    },
    KnownSymbol {
        name: "VDK_OPENTHREAD_SECURE_TRANSPORT",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: true,
        meaning: "model: OpenThread 2024+ (SecureTransport): asserts on `coaps connect` without credentials, has `coaps isconnected`...",
    },
    KnownSymbol {
        name: "FPU",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "floating point unit",
    },
    KnownSymbol {
        name: "GPIO_SHELL",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "`gpio` shell command",
    },
    KnownSymbol {
        name: "LOG_BACKEND_UART",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "log output on the UART",
    },
    KnownSymbol {
        name: "BT",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "Bluetooth LE (multiprotocol variant)",
    },
    KnownSymbol {
        name: "USB_DEVICE_STACK",
        kind: SymbolKind::Bool,
        default: "n",
        modelled: false,
        meaning: "USB device stack",
    },
    KnownSymbol {
        name: "SHELL_BACKEND_SERIAL",
        kind: SymbolKind::Bool,
        default: "y",
        modelled: false,
        meaning: "shell on the serial port",
    },
    KnownSymbol {
        name: "UART_CONSOLE",
        kind: SymbolKind::Bool,
        default: "y",
        modelled: false,
        meaning: "console on the UART",
    },
];

/// Look a symbol (without `CONFIG_`) up in [`KNOWN_SYMBOLS`].
pub fn known_symbol(name: &str) -> Option<&'static KnownSymbol> {
    KNOWN_SYMBOLS.iter().find(|s| s.name == name)
}

/// Something in a fragment the model does not act on, listed at boot and on request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KconfigWarning {
    /// A symbol not in [`KNOWN_SYMBOLS`]: kept, but the model behaves as if it were not set.
    UnknownSymbol {
        name: String,
        value: KconfigValue,
        file: PathBuf,
        line: usize,
    },
    /// A known symbol with a value of the wrong type; the default is used instead.
    WrongType {
        name: String,
        value: KconfigValue,
        expected: SymbolKind,
        file: PathBuf,
        line: usize,
    },
}

impl fmt::Display for KconfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KconfigWarning::UnknownSymbol {
                name,
                value,
                file,
                line,
            } => write!(
                f,
                "{}:{line}: CONFIG_{name}={value} is not modelled by the virtual DK (ignored)",
                file.display()
            ),
            KconfigWarning::WrongType {
                name,
                value,
                expected,
                file,
                line,
            } => write!(
                f,
                "{}:{line}: CONFIG_{name}={value} has the wrong type (expected {expected:?}); default used",
                file.display()
            ),
        }
    }
}

/// Merged Kconfig symbols of one image.
#[derive(Debug, Clone, Default)]
pub struct Kconfig {
    symbols: BTreeMap<String, KconfigValue>,
    warnings: Vec<KconfigWarning>,
}

impl Kconfig {
    /// Parse one fragment on its own.
    pub fn parse(path: &Path, text: &str) -> Result<Kconfig, FirmwareError> {
        let mut k = Kconfig::default();
        k.merge_fragment(path, text)?;
        Ok(k)
    }

    /// Merge one fragment; its assignments override earlier ones (as west/CMake merge them).
    pub fn merge_fragment(&mut self, path: &Path, text: &str) -> Result<(), FirmwareError> {
        for (index, raw_line) in text.lines().enumerate() {
            let line_no = index + 1;
            let Some((name, value)) =
                parse_line(raw_line).map_err(|message| FirmwareError::Kconfig {
                    path: path.to_path_buf(),
                    line: line_no,
                    message,
                })?
            else {
                continue;
            };
            // A later assignment replaces an earlier warning about the same symbol.
            self.warnings.retain(|w| match w {
                KconfigWarning::UnknownSymbol { name: n, .. }
                | KconfigWarning::WrongType { name: n, .. } => *n != name,
            });
            match known_symbol(&name) {
                None => self.warnings.push(KconfigWarning::UnknownSymbol {
                    name: name.clone(),
                    value: value.clone(),
                    file: path.to_path_buf(),
                    line: line_no,
                }),
                Some(sym) if !kind_matches(sym.kind, &value) => {
                    self.warnings.push(KconfigWarning::WrongType {
                        name: name.clone(),
                        value: value.clone(),
                        expected: sym.kind,
                        file: path.to_path_buf(),
                        line: line_no,
                    })
                }
                Some(_) => {}
            }
            self.symbols.insert(name, value);
        }
        Ok(())
    }

    /// Raw value as set in the fragments (without defaults).
    pub fn get(&self, name: &str) -> Option<&KconfigValue> {
        self.symbols.get(name)
    }

    /// All symbols set in the fragments.
    pub fn symbols(&self) -> impl Iterator<Item = (&str, &KconfigValue)> {
        self.symbols.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Symbols that the model does not act on, in file order.
    pub fn warnings(&self) -> &[KconfigWarning] {
        &self.warnings
    }

    /// The effective value: the fragment's if set with the right type, else the known default.
    pub fn value(&self, name: &str) -> Option<KconfigValue> {
        let sym = known_symbol(name);
        if let Some(v) = self.symbols.get(name) {
            match sym {
                Some(s) if !kind_matches(s.kind, v) => {}
                _ => return Some(v.clone()),
            }
        }
        sym.and_then(|s| parse_value(s.default).ok())
    }

    pub fn bool(&self, name: &str) -> bool {
        matches!(self.value(name), Some(KconfigValue::Bool(true)))
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        match self.value(name) {
            Some(KconfigValue::Int(i)) => Some(i),
            _ => None,
        }
    }

    pub fn string(&self, name: &str) -> Option<String> {
        match self.value(name) {
            Some(KconfigValue::Str(s)) => Some(s),
            _ => None,
        }
    }
}

fn kind_matches(kind: SymbolKind, value: &KconfigValue) -> bool {
    matches!(
        (kind, value),
        (SymbolKind::Bool, KconfigValue::Bool(_))
            | (SymbolKind::Int, KconfigValue::Int(_))
            | (SymbolKind::Str, KconfigValue::Str(_))
    )
}

/// One `.conf` line -> `Some((name without CONFIG_, value))`, `None` for blank/comment lines.
fn parse_line(line: &str) -> Result<Option<(String, KconfigValue)>, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    if let Some(comment) = line.strip_prefix('#') {
        // `# CONFIG_FOO is not set` is how Kconfig writes `n`; any other comment is ignored.
        let comment = comment.trim();
        if let Some(name) = comment
            .strip_prefix("CONFIG_")
            .and_then(|r| r.strip_suffix(" is not set"))
            && is_symbol_name(name)
        {
            return Ok(Some((name.to_string(), KconfigValue::Bool(false))));
        }
        return Ok(None);
    }
    let Some(rest) = line.strip_prefix("CONFIG_") else {
        return Err("expected CONFIG_<NAME>=<value> or a comment".into());
    };
    let Some((name, value)) = rest.split_once('=') else {
        return Err("missing '='".into());
    };
    let name = name.trim();
    if !is_symbol_name(name) {
        return Err(format!("bad symbol name {name:?}"));
    }
    let value = parse_value(strip_trailing_comment(value.trim()))?;
    Ok(Some((name.to_string(), value)))
}

/// Drop a `# comment` after an unquoted value (Kconfig allows it after values).
fn strip_trailing_comment(value: &str) -> &str {
    if value.starts_with('"') {
        return value;
    }
    match value.find('#') {
        Some(i) => value[..i].trim_end(),
        None => value,
    }
}

fn is_symbol_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b.is_ascii_lowercase()
        })
}

fn parse_value(v: &str) -> Result<KconfigValue, String> {
    match v {
        "y" => return Ok(KconfigValue::Bool(true)),
        "n" => return Ok(KconfigValue::Bool(false)),
        "" => return Err("empty value".into()),
        _ => {}
    }
    if let Some(body) = v.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.chars();
        loop {
            match chars.next() {
                None => return Err("unterminated string".into()),
                Some('\\') => match chars.next() {
                    Some(c) => out.push(c),
                    None => return Err("unterminated string".into()),
                },
                Some('"') => break,
                Some(c) => out.push(c),
            }
        }
        let trailing = chars.as_str().trim();
        if !trailing.is_empty() && !trailing.starts_with('#') {
            return Err(format!("unexpected text after string: {trailing:?}"));
        }
        return Ok(KconfigValue::Str(out));
    }
    let (negative, digits) = match v.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, v),
    };
    let parsed = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(h, 16)
    } else {
        digits.parse::<i64>()
    };
    match parsed {
        Ok(i) => Ok(KconfigValue::Int(if negative { -i } else { i })),
        Err(_) => Err(format!(
            "value {v:?} is not y, n, a number or a quoted string"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Kconfig {
        Kconfig::parse(Path::new("t.conf"), text).expect("parse")
    }

    #[test]
    fn parses_all_value_forms() {
        let k = parse(
            "# comment\n\nCONFIG_SHELL=y\nCONFIG_FPU=n\nCONFIG_OPENTHREAD_CHANNEL=15\n\
             CONFIG_OPENTHREAD_PANID=0x1f\nCONFIG_SHELL_PROMPT_UART=\"a \\\"b\\\" \\\\ \"\n\
             # CONFIG_SHELL_VT100_COLORS is not set\n  CONFIG_ASSERT=y # trailing\n",
        );
        assert_eq!(k.get("SHELL"), Some(&KconfigValue::Bool(true)));
        assert_eq!(k.get("FPU"), Some(&KconfigValue::Bool(false)));
        assert_eq!(k.int("OPENTHREAD_CHANNEL"), Some(15));
        assert_eq!(k.int("OPENTHREAD_PANID"), Some(31));
        assert_eq!(
            k.string("SHELL_PROMPT_UART").as_deref(),
            Some("a \"b\" \\ ")
        );
        assert!(!k.bool("SHELL_VT100_COLORS"));
        assert!(k.bool("ASSERT"));
        assert!(k.warnings().is_empty(), "{:?}", k.warnings());
    }

    #[test]
    fn defaults_apply_when_unset() {
        let k = parse("");
        assert_eq!(k.int("OPENTHREAD_CHANNEL"), Some(11));
        assert_eq!(k.int("OPENTHREAD_PANID"), Some(0xabcd));
        assert_eq!(
            k.string("OPENTHREAD_NETWORK_NAME").as_deref(),
            Some("ot_zephyr")
        );
        assert_eq!(k.string("SHELL_PROMPT_UART").as_deref(), Some("uart:~$ "));
        assert!(k.bool("SHELL_VT100_COLORS"));
        assert_eq!(k.int("SHELL_CMD_BUFF_SIZE"), Some(256));
    }

    #[test]
    fn unknown_symbols_are_warnings_not_silence() {
        let k = parse("CONFIG_SHELL=y\nCONFIG_FOO_BAR=y\nCONFIG_BAZ=\"x\"\n");
        let w: Vec<String> = k.warnings().iter().map(|w| w.to_string()).collect();
        assert_eq!(w.len(), 2);
        assert!(
            w[0].contains("CONFIG_FOO_BAR=y") && w[0].contains("t.conf:2"),
            "{w:?}"
        );
        assert!(w[1].contains("CONFIG_BAZ=\"x\""), "{w:?}");
        // The value is still recorded.
        assert_eq!(k.get("FOO_BAR"), Some(&KconfigValue::Bool(true)));
    }

    #[test]
    fn wrong_type_warns_and_keeps_default() {
        let k = parse("CONFIG_OPENTHREAD_CHANNEL=\"twelve\"\n");
        assert_eq!(k.warnings().len(), 1);
        assert!(matches!(k.warnings()[0], KconfigWarning::WrongType { .. }));
        assert_eq!(k.int("OPENTHREAD_CHANNEL"), Some(11));
    }

    #[test]
    fn later_fragment_overrides() {
        let mut k = Kconfig::default();
        k.merge_fragment(
            Path::new("a.conf"),
            "CONFIG_OPENTHREAD_CHANNEL=12\nCONFIG_X_UNKNOWN=y\n",
        )
        .unwrap();
        k.merge_fragment(
            Path::new("b.conf"),
            "CONFIG_OPENTHREAD_CHANNEL=20\nCONFIG_X_UNKNOWN=n\n",
        )
        .unwrap();
        assert_eq!(k.int("OPENTHREAD_CHANNEL"), Some(20));
        assert_eq!(
            k.warnings().len(),
            1,
            "one warning per symbol, from the last assignment"
        );
        assert!(k.warnings()[0].to_string().starts_with("b.conf:2"));
    }

    #[test]
    fn bad_lines_are_errors_with_position() {
        for bad in [
            "SHELL=y",
            "CONFIG_SHELL",
            "CONFIG_X=\"open",
            "CONFIG_X=maybe",
            "CONFIG_=y",
            "CONFIG_X=",
        ] {
            let err =
                Kconfig::parse(Path::new("f.conf"), &format!("CONFIG_A=y\n{bad}\n")).unwrap_err();
            assert!(
                err.to_string().starts_with("f.conf:2: bad kconfig line"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn manifest_load_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("a.conf");
        std::fs::write(&conf, "CONFIG_OPENTHREAD_CHANNEL=12\n").unwrap();
        let toml_text = "name = \"x\"\napplication = \"thread-cli\"\nprofile = \"ncs\"\nbanner = [\"hello\"]\nkconfig = [\"a.conf\"]\n";
        let man = dir.path().join("x.toml");
        std::fs::write(&man, toml_text).unwrap();
        let m = Manifest::load(&man).unwrap();
        assert_eq!(m.name, "x");
        assert_eq!(m.profile, Profile::Ncs);
        assert_eq!(m.banner, vec!["hello".to_string()]);
        assert_eq!(m.kconfig.int("OPENTHREAD_CHANNEL"), Some(12));
        let mut h = Sha256::new();
        h.update(toml_text.as_bytes());
        h.update(b"CONFIG_OPENTHREAD_CHANNEL=12\n");
        assert_eq!(m.image_hash(), hex::encode(h.finalize()));
        // Changing a fragment changes the hash.
        std::fs::write(&conf, "CONFIG_OPENTHREAD_CHANNEL=13\n").unwrap();
        assert_ne!(Manifest::load(&man).unwrap().image_hash(), m.image_hash());
    }

    #[test]
    fn manifest_errors() {
        let dir = tempfile::tempdir().unwrap();
        let man = dir.path().join("x.toml");
        std::fs::write(
            &man,
            "name = \"x\"\napplication = \"thread-cli\"\nprofile = \"bogus\"\n",
        )
        .unwrap();
        assert!(matches!(
            Manifest::load(&man),
            Err(FirmwareError::Manifest { .. })
        ));
        std::fs::write(&man, "name = \"x\"\napplication = \"thread-cli\"\nprofile = \"ncs\"\nkconfig = [\"missing.conf\"]\n").unwrap();
        assert!(matches!(
            Manifest::load(&man),
            Err(FirmwareError::Read { .. })
        ));
        assert!(matches!(
            Manifest::load(&dir.path().join("nope.toml")),
            Err(FirmwareError::Read { .. })
        ));
    }

    #[test]
    fn shipped_variants_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../firmware/variants");
        for name in ["ncs-v2.1.0.toml", "ncs-v2.2.0.toml", "upstream.toml"] {
            let m = Manifest::load(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(m.application, Application::ThreadCli);
            assert!(
                m.kconfig.warnings().is_empty(),
                "{name}: {:?}",
                m.kconfig.warnings()
            );
        }
    }
}
