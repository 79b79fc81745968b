//! Where output goes and how it looks.
//!
//! Results go to stdout, everything else (progress, notes, logs, errors) to stderr, so a pipeline
//! sees only results. Colour follows `--color`: `auto` colours only when stdout is a terminal and
//! `NO_COLOR` is unset, as ripgrep does. Painting goes through owo-colors' `if_supports_color`
//! with the decision set as its override, so no code path can emit escapes the user turned off.

// The one module that writes output; everywhere else the print lints deny it.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use owo_colors::{OwoColorize, Stream, Style};

use crate::cli::{ColorChoice, GlobalArgs};

/// The look of a piece of text; mapped to colours only when colour is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Fail,
    Warn,
    Info,
    Pass,
    Heading,
    Dim,
}

#[derive(Debug, Clone)]
pub struct Printer {
    color: bool,
    quiet: bool,
    verbose: u8,
    progress: bool,
}

/// Decides colour from the choice and the environment; pure, so it can be tested.
pub fn color_enabled(
    choice: ColorChoice,
    stdout_is_terminal: bool,
    no_color: Option<&str>,
    term: Option<&str>,
) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => stdout_is_terminal && no_color.is_none_or(str::is_empty) && term != Some("dumb"),
    }
}

impl Printer {
    pub fn new(args: &GlobalArgs) -> Self {
        let color = color_enabled(
            args.color,
            std::io::stdout().is_terminal(),
            std::env::var("NO_COLOR").ok().as_deref(),
            std::env::var("TERM").ok().as_deref(),
        );
        owo_colors::set_override(color);
        Printer {
            color,
            quiet: args.quiet,
            verbose: args.verbose,
            progress: !args.quiet && std::io::stderr().is_terminal(),
        }
    }

    /// A printer for tests and library callers: no colour, no progress.
    pub fn plain() -> Self {
        Printer { color: false, quiet: false, verbose: 0, progress: false }
    }

    pub fn color(&self) -> bool {
        self.color
    }

    pub fn verbosity(&self) -> u8 {
        self.verbose
    }

    /// Writes a result to stdout.
    pub fn result(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        // A closed pipe (`| head`) is not an error worth reporting.
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }

    /// A note for people, on stderr; silent with `-q`.
    pub fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// Detail shown with `-v`.
    pub fn detail(&self, text: &str) {
        if self.verbose > 0 {
            eprintln!("{text}");
        }
    }

    /// An error line on stderr, always shown.
    pub fn error(&self, text: &str) {
        eprintln!("error: {text}");
    }

    /// Paints text for stdout when colour is on.
    pub fn paint(&self, text: &str, tone: Tone) -> String {
        let style = match tone {
            Tone::Fail => Style::new().red().bold(),
            Tone::Warn => Style::new().yellow(),
            Tone::Info => Style::new().cyan(),
            Tone::Pass => Style::new().green(),
            Tone::Heading => Style::new().bold(),
            Tone::Dim => Style::new().dimmed(),
        };
        text.if_supports_color(Stream::Stdout, |text| text.style(style)).to_string()
    }

    /// A spinner on stderr for long waits; hidden when quiet or when stderr is not a terminal.
    pub fn spinner(&self, message: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_colour_needs_a_terminal_and_no_no_color() {
        assert!(color_enabled(ColorChoice::Auto, true, None, Some("xterm")));
        assert!(!color_enabled(ColorChoice::Auto, false, None, Some("xterm")));
        assert!(!color_enabled(ColorChoice::Auto, true, Some("1"), Some("xterm")));
        assert!(color_enabled(ColorChoice::Auto, true, Some(""), Some("xterm")), "an empty NO_COLOR does not count");
        assert!(!color_enabled(ColorChoice::Auto, true, None, Some("dumb")));
        assert!(color_enabled(ColorChoice::Always, false, Some("1"), None));
        assert!(!color_enabled(ColorChoice::Never, true, None, None));
    }
}
