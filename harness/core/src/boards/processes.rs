//! Host processes on PTYs (`--board-command`): one process per board, started per case run
//! from a pool of commands shared by the cases running at once. The process is the firmware:
//! nothing to flash, starting it is the reset. Each case run starts them in a fresh working
//! directory (so relative paths in a command do not resolve against the caller's), unless
//! `--keep-state`.

use std::sync::Mutex;

use tokio::sync::Notify;

use super::{
    Acquired, AcquiredBoard, BoardSource, BoxFuture, CaseBoards, CaseRun, ConsolePort, infra,
};
use crate::infra::{InfraError, InfraFailure};
use crate::profile::Shell;
use crate::report::provenance::NodeFacts;

/// Boards that are commands run with `sh -c`.
#[derive(Debug)]
pub struct ProcessBoards {
    commands: Vec<String>,
    shell: Shell,
    pool: std::sync::Arc<Pool>,
}

impl ProcessBoards {
    /// One board per command; their shell is `shell`.
    pub fn new(commands: Vec<String>, shell: Shell) -> ProcessBoards {
        let pool = Pool {
            free: Mutex::new((0..commands.len()).rev().collect()),
            returned: Notify::new(),
        };
        ProcessBoards {
            commands,
            shell,
            pool: std::sync::Arc::new(pool),
        }
    }
}

/// A pool of process boards: a case takes as many as it has nodes, all at once.
#[derive(Debug)]
struct Pool {
    free: Mutex<Vec<usize>>,
    returned: Notify,
}

impl Pool {
    async fn take(&self, n: usize) -> Vec<usize> {
        loop {
            let notified = self.returned.notified();
            {
                let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
                if free.len() >= n {
                    let at = free.len() - n;
                    return free.split_off(at);
                }
            }
            notified.await;
        }
    }

    fn give_back(&self, boards: Vec<usize>) {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(boards);
        self.returned.notify_waiters();
    }
}

impl BoardSource for ProcessBoards {
    fn acquire<'a>(&'a self, run: CaseRun<'a>) -> BoxFuture<'a, Result<Acquired, InfraFailure>> {
        Box::pin(async move {
            let nodes = &run.case.nodes;
            if nodes.len() > self.commands.len() {
                return Err(infra(
                    "-",
                    InfraError::acquire(format!(
                        "case needs {} boards, only {} board commands given",
                        nodes.len(),
                        self.commands.len()
                    )),
                ));
            }
            // A fresh directory per case run: a host program keeps its settings in files
            // relative to its working directory (OpenThread's simulation: `tmp/*.flash`), which
            // would carry one case's network into the next.
            let dir = if run.options.keep_state {
                None
            } else {
                Some(run.work_dir()?)
            };
            let taken = self.pool.take(nodes.len()).await;
            let boards = nodes
                .iter()
                .zip(&taken)
                .filter_map(|(node, &i)| {
                    let command = self.commands.get(i)?;
                    Some(AcquiredBoard {
                        tap: None,
                        node: node.clone(),
                        port: ConsolePort::Process {
                            program: "/bin/sh".into(),
                            args: vec![
                                "-c".into(),
                                match &dir {
                                    Some(d) => format!(
                                        "cd {} && exec {command}",
                                        crate::otsim::shell_quote(&d.to_string_lossy())
                                    ),
                                    None => format!("exec {command}"),
                                },
                            ],
                        },
                        shell: self.shell.clone(),
                        banner: vec![],
                        note: None,
                        flash: None,
                        factory_reset: false,
                        facts: NodeFacts {
                            source: "host",
                            board_id: Some(format!("board command {}", i + 1)),
                            ..NodeFacts::default()
                        },
                    })
                })
                .collect();
            let held = Taken {
                pool: self.pool.clone(),
                boards: taken,
            };
            Ok(Acquired {
                clock: crate::step_clock::StepClock::Real,
                boards,
                held: Box::new(held),
                seed: None,
                sniffer: None,
            })
        })
    }
}

/// Pooled boards held by one case run.
struct Taken {
    pool: std::sync::Arc<Pool>,
    boards: Vec<usize>,
}

impl CaseBoards for Taken {
    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        self.pool.give_back(self.boards);
        Box::pin(async {})
    }
}
