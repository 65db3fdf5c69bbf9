//! Board profiles: how a board's shell wants commands, so one case runs on every shell.
//!
//! Cases write OpenThread CLI commands without a prefix; the profile adds it. NCS Thread CLI
//! sample: Zephyr shell, prefix `ot `, prompt `uart:~$ ` (or whatever `CONFIG_SHELL_PROMPT_UART`
//! says). Upstream OpenThread CLI: no prefix, prompt `> `.

use ot_hil_vdk::firmware::{Manifest, Profile as FirmwareProfile};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// `ncs` or `upstream`.
    pub name: String,
    /// Prepended to every command.
    pub prefix: String,
    /// Prompts the console may print (stripped from lines).
    pub prompts: Vec<String>,
    /// Appended to every command line.
    pub line_ending: String,
    /// Whether the shell echoes the command line (the step then waits for the echo first).
    pub echo: bool,
}

impl Profile {
    pub fn ncs() -> Profile {
        Profile {
            name: "ncs".into(),
            prefix: "ot ".into(),
            prompts: vec!["uart:~$ ".into()],
            line_ending: "\r\n".into(),
            echo: true,
        }
    }

    pub fn upstream() -> Profile {
        Profile {
            name: "upstream".into(),
            prefix: String::new(),
            prompts: vec!["> ".into()],
            line_ending: "\r\n".into(),
            echo: true,
        }
    }

    pub fn by_name(name: &str) -> Option<Profile> {
        match name {
            "ncs" => Some(Profile::ncs()),
            "upstream" => Some(Profile::upstream()),
            _ => None,
        }
    }

    /// The profile a firmware variant's image shows on its console.
    pub fn for_manifest(m: &Manifest) -> Profile {
        match m.profile {
            FirmwareProfile::Ncs => {
                let mut p = Profile::ncs();
                if let Some(prompt) = m.kconfig.string("SHELL_PROMPT_UART")
                    && !prompt.is_empty()
                {
                    p.prompts = vec![prompt];
                }
                p.echo = m.kconfig.value("SHELL_ECHO_STATUS").is_none()
                    || m.kconfig.bool("SHELL_ECHO_STATUS");
                p
            }
            FirmwareProfile::Upstream => Profile::upstream(),
        }
    }

    /// The full line to type for `command`.
    pub fn command_line(&self, command: &str) -> String {
        format!("{}{}", self.prefix, command)
    }
}

/// Whether `line` is one OpenThread's CLI prints from a callback, whenever the event happens,
/// rather than as a command's output. Such a line can land between another command's echo and
/// its `Done`; it is left for an `expect` step instead of being taken as that command's output.
/// Both profiles run OpenThread's CLI.
pub fn is_callback_line(line: &str) -> bool {
    OPENTHREAD_CALLBACK_LINES
        .iter()
        .any(|prefix| line.starts_with(prefix))
}

/// How OpenThread's CLI callback lines start (`src/cli/cli_coap.cpp` and `cli_coap_secure.cpp`,
/// sdk-openthread 0759de4: `HandleRequest`, `HandleResponse`, `HandleConnected`). Ping replies are
/// not here: `ping` prints them before its own `Done`.
const OPENTHREAD_CALLBACK_LINES: &[&str] = &[
    "coaps connected",
    "coaps disconnected",
    "coaps request from ",
    "coaps response sent",
    "coaps send response error ",
    "coaps response from ",
    "coaps receive response error ",
    "coap request from ",
    "coap response sent",
    "coap send response error ",
    "coap response from ",
    "coap receive response error ",
    "coap receive notification response error ",
    "Received ACK in reply to notification from ",
    "Subscribing client",
    // Block-wise transfer handlers (cli_coap.cpp / cli_coap_secure.cpp).
    "received block: ",
    "send block: ",
];
