//! Command-line flags of the end-to-end benches (`route_load`,
//! `gateway_overhead`): `--flag value` or `--flag=value`.

pub struct Flags {
    args: std::iter::Skip<std::env::Args>,
    /// The `=value` part of the current argument, if it had one.
    inline: Option<String>,
}

impl Flags {
    pub fn from_env() -> Self {
        Flags {
            args: std::env::args().skip(1),
            inline: None,
        }
    }

    /// The next argument, as given and as a flag (without any `=value`).
    pub fn next_flag(&mut self) -> Option<(String, String)> {
        let a = self.args.next()?;
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        self.inline = inline;
        Some((a, flag))
    }

    /// The current flag's value: its `=value`, or else the next argument.
    pub fn value(&mut self, name: &str) -> Result<String, String> {
        self.inline
            .take()
            .or_else(|| self.args.next())
            .ok_or(format!("{name} needs a value"))
    }
}

/// What `main` does with its parsed flags: `Ok(Some(options))` gives the
/// options; `Ok(None)` (cargo ran the target without `--bench`, e.g.
/// `cargo test`) prints `not_run` and gives None; an error is printed and
/// the process exits with status 2.
pub fn options_or_exit<T>(parsed: Result<Option<T>, String>, not_run: &str) -> Option<T> {
    match parsed {
        Ok(Some(o)) => Some(o),
        Ok(None) => {
            println!("{not_run}");
            None
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}
