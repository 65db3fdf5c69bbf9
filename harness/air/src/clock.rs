//! The case clock: a discrete-event scheduler over the boards of one case run.
//!
//! Every clocked board (a virtual DK started on the case clock) runs until it has nothing left
//! to do and then sends an [`IdleReport`]: the instant it has reached, its next timer, and how
//! many console bytes, frames and control requests it has consumed. The runner's side of each
//! board ([`crate::BoardTap`]) counts what it sent the board and what it read back. A board is
//! *idle* when its report is for the current instant and every count matches: nothing is on its
//! way to it or from it. Time only moves while every board is idle and the runner waits (an
//! `expect`, a poll interval, a quiet window); it then jumps straight to the earliest of the
//! boards' timers, the delayed frames and the runner's own deadline. Nothing here sleeps: the
//! scheduler is driven by the reports, the taps and the runner's waits.
//!
//! Frames transmitted at one instant are held until every board is idle and then delivered in
//! a fixed order (by the boards' ranks, then in the order each sent them), so the air's fault
//! draws, and with them a whole case run, depend on the case seed, not on thread timing.
//!
//! This module is the decision logic only (`ClockState::next_step`); the hub carries out the
//! steps (delivering frames, telling boards the time, waking the runner).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::proto::IdleReport;

/// What the runner's wait ended on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A console showed new output and every board is idle again: look at it.
    Changed,
    /// The case clock reached the runner's deadline (every board idle at that instant).
    Deadline,
    /// The boards stopped answering for the watchdog's real time: the clock could not move.
    Stalled,
}

/// One board on the case clock.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClockedBoard {
    /// Delivery order among the boards of the case (the node's position); unknown boards last.
    pub rank: u32,
    /// The board's last report; `None` until it has registered.
    pub report: Option<IdleReport>,
    /// Datagrams the hub handed to it that its report must account for.
    pub delivered: u64,
    /// Console bytes the runner wrote to it.
    pub console_written: u64,
    /// Console bytes the runner read from it.
    pub console_read: u64,
    /// Control requests the runner sent it.
    pub controls_sent: u64,
    /// Gone (process ended, console closed, socket removed): no longer waited for.
    pub gone: bool,
    /// Expected by the runner (as opposed to a board that registered by itself).
    pub expected: bool,
}

impl ClockedBoard {
    fn idle_at(&self, now_us: u64) -> bool {
        if self.gone {
            return true;
        }
        let Some(r) = self.report else {
            return false;
        };
        r.now_us == now_us
            && r.console_in == self.console_written
            && r.console_out == self.console_read
            && r.frames_in == self.delivered
            && r.controls == self.controls_sent
    }
}

/// A frame transmitted at the current instant, not yet delivered.
#[derive(Debug, Clone)]
pub(crate) struct PendingTx {
    pub from: PathBuf,
    pub rank: u32,
    pub seq: u64,
    pub channel: u8,
    pub psdu: Vec<u8>,
    pub fcs: u16,
}

/// The runner waiting on the case clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunnerWait {
    pub deadline_us: u64,
    /// The console generation the runner last looked at.
    pub seen: u64,
}

/// What the hub does next.
#[derive(Debug)]
pub(crate) enum Step {
    /// Something is still on its way, or the runner is working: do nothing until it reports.
    Hold,
    /// Deliver these transmissions, in this order.
    Deliver(Vec<PendingTx>),
    /// Move the clock to this instant: deliver the delayed frames due, tell every board.
    Advance(u64),
    /// End the runner's wait.
    Wake(Wake),
}

#[derive(Debug, Default)]
pub(crate) struct ClockState {
    pub now_us: u64,
    pub boards: BTreeMap<PathBuf, ClockedBoard>,
    pub pending: Vec<PendingTx>,
    pub next_seq: u64,
    /// Bumped whenever the runner has something new to look at (console output, a lost board).
    pub generation: u64,
    pub runner: Option<RunnerWait>,
    /// How the runner's current wait ended, until it picks it up.
    pub wake: Option<Wake>,
    /// Instants the clock moved to, for the record.
    pub advances: u64,
}

impl ClockState {
    pub fn board(&mut self, radio: &std::path::Path) -> &mut ClockedBoard {
        self.boards
            .entry(radio.to_path_buf())
            .or_insert_with(|| ClockedBoard {
                rank: u32::MAX,
                ..ClockedBoard::default()
            })
    }

    pub fn all_idle(&self) -> bool {
        self.boards.values().all(|b| b.idle_at(self.now_us))
    }

    /// Hold a transmission of `from` until every board is idle.
    pub fn hold(&mut self, from: &std::path::Path, channel: u8, psdu: &[u8], fcs: u16) {
        let rank = self.boards.get(from).map_or(u32::MAX, |b| b.rank);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push(PendingTx {
            from: from.to_path_buf(),
            rank,
            seq,
            channel,
            psdu: psdu.to_vec(),
            fcs,
        });
    }

    /// Decide the next step; `next_delayed_us` is the due time of the earliest delayed frame.
    pub fn next_step(&mut self, next_delayed_us: Option<u64>) -> Step {
        if !self.all_idle() {
            return Step::Hold;
        }
        // Nothing happens while the runner works (it may still be typing to several boards, or
        // flashing them): frames wait for its next wait, so its actions and the air's never
        // interleave differently from one run to the next.
        let Some(runner) = self.runner else {
            return Step::Hold;
        };
        if !self.pending.is_empty() {
            let mut round = std::mem::take(&mut self.pending);
            round.sort_by(|a, b| (a.rank, &a.from, a.seq).cmp(&(b.rank, &b.from, b.seq)));
            return Step::Deliver(round);
        }
        if self.generation != runner.seen {
            return Step::Wake(Wake::Changed);
        }
        if runner.deadline_us <= self.now_us {
            return Step::Wake(Wake::Deadline);
        }
        let floor = self.now_us + 1;
        let target = self
            .boards
            .values()
            .filter(|b| !b.gone)
            .filter_map(|b| b.report.and_then(|r| r.deadline_us))
            .chain(next_delayed_us)
            .map(|t| t.max(floor))
            .fold(runner.deadline_us, u64::min);
        Step::Advance(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn report(now_us: u64, deadline_us: Option<u64>) -> IdleReport {
        IdleReport {
            now_us,
            deadline_us,
            ..IdleReport::default()
        }
    }

    fn two_boards() -> ClockState {
        let mut c = ClockState::default();
        for (i, p) in ["a", "b"].iter().enumerate() {
            let b = c.board(Path::new(p));
            b.rank = i as u32;
            b.expected = true;
            b.report = Some(report(0, None));
        }
        c
    }

    #[test]
    fn time_waits_for_the_runner_and_jumps_to_the_earliest_timer() {
        let mut c = two_boards();
        assert!(
            matches!(c.next_step(None), Step::Hold),
            "runner not waiting"
        );
        c.runner = Some(RunnerWait {
            deadline_us: 10_000_000,
            seen: 0,
        });
        c.board(Path::new("b")).report = Some(report(0, Some(8_000_000)));
        assert!(matches!(
            c.next_step(Some(9_000_000)),
            Step::Advance(8_000_000)
        ));
        c.now_us = 8_000_000;
        assert!(
            matches!(c.next_step(None), Step::Hold),
            "boards have not seen the new instant"
        );
        for p in ["a", "b"] {
            c.board(Path::new(p)).report = Some(report(8_000_000, None));
        }
        assert!(matches!(c.next_step(None), Step::Advance(10_000_000)));
        c.now_us = 10_000_000;
        for p in ["a", "b"] {
            c.board(Path::new(p)).report = Some(report(10_000_000, None));
        }
        assert!(matches!(c.next_step(None), Step::Wake(Wake::Deadline)));
    }

    #[test]
    fn a_byte_or_frame_still_on_its_way_holds_the_clock() {
        let mut c = two_boards();
        c.runner = Some(RunnerWait {
            deadline_us: 5,
            seen: 0,
        });
        c.board(Path::new("a")).console_written = 3;
        assert!(matches!(c.next_step(None), Step::Hold), "typed, not read");
        c.board(Path::new("a")).report = Some(IdleReport {
            console_in: 3,
            console_out: 7,
            ..report(0, None)
        });
        assert!(matches!(c.next_step(None), Step::Hold), "echo not read yet");
        c.board(Path::new("a")).console_read = 7;
        c.board(Path::new("b")).delivered = 1;
        assert!(matches!(c.next_step(None), Step::Hold), "frame not handled");
        c.board(Path::new("b")).gone = true;
        assert!(
            matches!(c.next_step(None), Step::Advance(5)),
            "a gone board is not waited for"
        );
    }

    #[test]
    fn new_output_wakes_the_runner_before_time_moves() {
        let mut c = two_boards();
        c.runner = Some(RunnerWait {
            deadline_us: 5,
            seen: 0,
        });
        c.generation = 1;
        assert!(matches!(c.next_step(None), Step::Wake(Wake::Changed)));
    }

    #[test]
    fn frames_of_one_instant_go_out_by_rank_then_send_order() {
        let mut c = two_boards();
        c.runner = Some(RunnerWait {
            deadline_us: 5,
            seen: 0,
        });
        c.hold(Path::new("b"), 11, &[1], 0);
        c.hold(Path::new("a"), 11, &[2], 0);
        c.hold(Path::new("b"), 11, &[3], 0);
        c.hold(Path::new("x"), 11, &[4], 0);
        assert!(
            matches!(c.clone_runner_less().next_step(None), Step::Hold),
            "frames wait while the runner works"
        );
        let Step::Deliver(round) = c.next_step(None) else {
            panic!("expected a delivery round");
        };
        let order: Vec<u8> = round.iter().map(|t| t.psdu[0]).collect();
        assert_eq!(order, [2, 1, 3, 4]);
        assert!(c.pending.is_empty());
    }

    impl ClockState {
        fn clone_runner_less(&self) -> ClockState {
            ClockState {
                now_us: self.now_us,
                boards: self.boards.clone(),
                pending: self.pending.clone(),
                ..ClockState::default()
            }
        }
    }

    #[test]
    fn an_unregistered_board_holds_the_clock() {
        let mut c = two_boards();
        c.board(Path::new("c")).expected = true;
        c.runner = Some(RunnerWait {
            deadline_us: 5,
            seen: 0,
        });
        assert!(matches!(c.next_step(None), Step::Hold));
    }
}
