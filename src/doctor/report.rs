//! doctor's report: the steps in their fixed order, how each went, and its two formats
//! (text for people, JSON for tools).

use std::fmt::Write as _;
use std::time::Instant;

use serde::Serialize;

use crate::class::ErrorClass;
use crate::display::{millis, printable};
use crate::error::exit_code_of;

/// How a step went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skipped,
}

/// One step's line; `--format json` prints these as they are (a stable shape).
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: &'static str,
    pub status: Status,
    pub ms: u64,
    pub detail: String,
    pub hint: Option<String>,
    pub error_class: Option<ErrorClass>,
}

/// Every step, in order.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub steps: Vec<Step>,
}

/// The steps, in the order they are walked (`walk` takes them in this order; a step is
/// named by its place here).
pub const STEPS: [&str; 10] = [
    "configuration",
    "credentials",
    "secret fields",
    "dns",
    "tcp",
    "tls",
    "authentication",
    "database",
    "out-dir",
    "admin",
];

impl Report {
    /// 0 when nothing failed (warnings allowed); else the documented exit code of the
    /// first failed step's class.
    pub fn exit_code(&self) -> u8 {
        self.steps
            .iter()
            .find(|s| s.status == Status::Fail)
            .map_or(0, |s| {
                exit_code_of(s.error_class.unwrap_or(ErrorClass::Other))
            })
    }

    pub fn json(&self) -> String {
        #[derive(Serialize)]
        struct Shown<'a> {
            steps: &'a [Step],
            exit_code: u8,
        }
        let shown = Shown {
            steps: &self.steps,
            exit_code: self.exit_code(),
        };
        let mut out = serde_json::to_string_pretty(&shown).unwrap_or_default();
        out.push('\n');
        out
    }

    /// For people: a line a step, the hint under a failure; colour only on a terminal.
    pub fn text(&self, colour: bool) -> String {
        let mut out = String::new();
        for s in &self.steps {
            let (word, code) = match s.status {
                Status::Ok => ("ok", "32"),
                Status::Warn => ("warn", "33"),
                Status::Fail => ("FAIL", "31"),
                Status::Skipped => ("skip", "2"),
            };
            let word = if colour {
                format!("\x1b[{code}m{word:<4}\x1b[0m")
            } else {
                format!("{word:<4}")
            };
            let _ = writeln!(out, "{word} {:<14} {:>6} ms  {}", s.name, s.ms, s.detail);
            if let Some(hint) = &s.hint {
                let _ = writeln!(out, "{:>29}{hint}", "→ ");
            }
        }
        let _ = writeln!(out, "exit code {}", self.exit_code());
        out
    }

    /// Records the next step: its name is its place in [`STEPS`], so the walk and the list
    /// cannot disagree.
    pub(super) fn push(&mut self, started: Instant, outcome: Outcome) {
        let name = STEPS
            .get(self.steps.len())
            .copied()
            .unwrap_or("(a step STEPS lacks)");
        let (status, detail, hint, error_class) = match outcome {
            Outcome::Ok(d) => (Status::Ok, d, None, None),
            Outcome::Warn(d, h) => (Status::Warn, d, Some(h), None),
            Outcome::Fail(class, d, h) => (Status::Fail, d, h, Some(class)),
        };
        self.steps.push(Step {
            name,
            status,
            ms: millis(started.elapsed()),
            // Text from servers and files is shown escaped.
            detail: printable(&detail),
            hint: hint.map(|h| printable(&h)),
            error_class,
        });
    }

    /// The steps not reached, after a failure.
    pub(super) fn skip_rest(&mut self) {
        let done = self.steps.len();
        for name in &STEPS[done..] {
            self.steps.push(Step {
                name,
                status: Status::Skipped,
                ms: 0,
                detail: "not reached: an earlier step failed".into(),
                hint: None,
                error_class: None,
            });
        }
    }

    pub(super) fn failed(&self) -> bool {
        self.steps.iter().any(|s| s.status == Status::Fail)
    }
}

/// What one step found.
pub(super) enum Outcome {
    Ok(String),
    Warn(String, String),
    Fail(ErrorClass, String, Option<String>),
}

impl Outcome {
    pub(super) fn fail(class: ErrorClass, detail: impl Into<String>, hint: &str) -> Self {
        Outcome::Fail(class, detail.into(), Some(hint.to_string()))
    }
}

pub(super) const TIMEOUT_HINT: &str = "nothing answered within --step-timeout: a security group or network ACL that drops the traffic (the cluster's must admit the task's on this port), a cluster in another VPC, or one still being created";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_is_the_first_failures() {
        let line = |status, class| Step {
            name: "x",
            status,
            ms: 0,
            detail: String::new(),
            hint: None,
            error_class: class,
        };
        let mut report = Report::default();
        report.steps.push(line(Status::Warn, None));
        assert_eq!(report.exit_code(), 0);
        report
            .steps
            .push(line(Status::Fail, Some(ErrorClass::PasswordRejected)));
        report
            .steps
            .push(line(Status::Fail, Some(ErrorClass::OutDir)));
        assert_eq!(report.exit_code(), 77);
        assert!(report.json().contains("\"exit_code\": 77"));
    }
}
