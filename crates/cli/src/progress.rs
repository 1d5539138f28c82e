//! Progress on the terminal (training runs and `eval`): a bar per phase (hidden
//! when stderr is not a terminal) and the runs' notes on stderr.

use std::cell::RefCell;
use std::io::IsTerminal;

use pointsman_classifier::training::Progress;

/// Draws each phase of a training run as an indicatif bar and prints its
/// notes to stderr (above the bar, when one is drawn).
#[derive(Default)]
pub struct Bars {
    current: RefCell<Option<indicatif::ProgressBar>>,
}

impl Progress for Bars {
    fn begin(&self, what: &'static str, total: usize) {
        let b = bar(what);
        b.set_length(total as u64);
        if let Some(old) = self.current.replace(Some(b)) {
            old.finish_and_clear();
        }
    }

    fn update(&self, done: usize, total: usize) {
        if let Some(b) = &*self.current.borrow() {
            b.set_length(total as u64);
            b.set_position(done as u64);
        }
    }

    fn end(&self) {
        if let Some(b) = self.current.take() {
            b.finish_and_clear();
        }
    }

    fn note(&self, line: &str) {
        match &*self.current.borrow() {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

/// A bar on stderr labelled `msg` (hidden when stderr is not a terminal).
pub(crate) fn bar(msg: &'static str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(0);
    b.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bar:30} {pos}/{len} [{elapsed_precise}, eta {eta}]",
        )
        .expect("valid template"),
    );
    b.set_message(msg);
    b
}

/// The training commands' errors for the terminal: a file with malformed
/// lines first prints each line's error (as `error: FILE: line N: …`).
pub fn training_error(e: pointsman_classifier::ClassifierError) -> anyhow::Error {
    if let pointsman_classifier::ClassifierError::MalformedRecords { path, errors } = &e {
        for line in errors {
            eprintln!("error: {}: {line}", path.display());
        }
    }
    e.into()
}
