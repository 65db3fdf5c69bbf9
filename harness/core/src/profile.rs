//! Board shells: how a board's shell wants commands, so one case runs on every shell.
//!
//! Cases write OpenThread CLI commands without a prefix; the profile adds it. NCS Thread CLI
//! sample: Zephyr shell, prefix `ot `, prompt `uart:~$ ` (or whatever `CONFIG_SHELL_PROMPT_UART`
//! says). Upstream OpenThread CLI: no prefix, prompt `> `.

use ot_hil_board::firmware::Manifest;

pub use ot_hil_board::Profile;

/// How the shell of a board with a given [`Profile`] wants commands, as the console uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shell {
    pub profile: Profile,
    /// Prepended to every command.
    pub prefix: String,
    /// Prompts the console may print (stripped from lines).
    pub prompts: Vec<String>,
    /// Appended to every command line.
    pub line_ending: String,
    /// Whether the shell echoes the command line (the step then waits for the echo first).
    pub echo: bool,
}

impl Shell {
    /// The shell a profile has when its firmware was built with the defaults.
    pub fn of(profile: Profile) -> Shell {
        match profile {
            Profile::Ncs => Shell {
                profile,
                prefix: "ot ".into(),
                prompts: vec!["uart:~$ ".into()],
                line_ending: "\r\n".into(),
                echo: true,
            },
            Profile::Upstream => Shell {
                profile,
                prefix: String::new(),
                prompts: vec!["> ".into()],
                line_ending: "\r\n".into(),
                echo: true,
            },
        }
    }

    pub fn ncs() -> Shell {
        Shell::of(Profile::Ncs)
    }

    pub fn upstream() -> Shell {
        Shell::of(Profile::Upstream)
    }

    /// The shell a firmware variant's image shows on its console (its Kconfig may change the
    /// Zephyr shell's prompt and echo).
    pub fn for_manifest(m: &Manifest) -> Shell {
        let mut shell = Shell::of(m.profile);
        if m.profile == Profile::Ncs {
            if let Some(prompt) = m.kconfig.string("SHELL_PROMPT_UART")
                && !prompt.is_empty()
            {
                shell.prompts = vec![prompt];
            }
            shell.echo = m.kconfig.value("SHELL_ECHO_STATUS").is_none()
                || m.kconfig.bool("SHELL_ECHO_STATUS");
        }
        shell
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
