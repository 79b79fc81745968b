//! `kubectl ambient-check <TAB>`: the arguments of a kubectl plugin, completed by kubectl itself.
//!
//! kubectl (1.26 and later) completes what follows a plugin's name by running
//! `kubectl_complete-<plugin>` from PATH (`kubectl_complete-ambient_check`) with the words typed
//! after the name, the last one being the word to complete (empty for a new word). It reads one
//! candidate per line, then an optional `:<directive>` line (cobra's `ShellCompDirective`). `make
//! install` links that name to each plugin binary; started under it, the binary answers from its
//! own clap command (flags, their values, subcommands) and exits, so the answers cannot drift
//! from the flags. Namespaces are not completed: that would need the cluster.

use clap::Command;

/// The executable name prefix kubectl looks up for a plugin's completion.
pub const KUBECTL_COMPLETE_PREFIX: &str = "kubectl_complete-";

/// cobra's `ShellCompDirectiveDefault`: the shell may fall back to file names.
const FILES: u8 = 0;
/// cobra's `ShellCompDirectiveNoFileComp`: these candidates and nothing else.
const NO_FILES: u8 = 4;

/// The candidates for the last of `words` and the directive for the shell.
pub fn candidates(command: &Command, words: &[String]) -> (Vec<String>, u8) {
    let (partial, before) = match words.split_last() {
        Some((last, before)) => (last.as_str(), before),
        None => ("", words),
    };
    let command = before.iter().fold(command, |command, word| command.find_subcommand(word).unwrap_or(command));
    if let Some((flag, value)) = partial.split_once('=').filter(|(flag, _)| flag.starts_with("--")) {
        return match value_candidates(command, flag, value) {
            Some(values) => (values.into_iter().map(|value| format!("{flag}={value}")).collect(), NO_FILES),
            None => (Vec::new(), FILES),
        };
    }
    if let Some(previous) = before.last().filter(|word| word.starts_with('-') && !word.contains('=')) {
        if let Some(values) = value_candidates(command, previous, partial) {
            return (values, NO_FILES);
        }
        if takes_value(command, previous) {
            return (Vec::new(), FILES);
        }
    }
    if partial.starts_with('-') {
        let flags = command
            .get_arguments()
            .filter(|arg| !arg.is_hide_set())
            .filter_map(|arg| arg.get_long().map(|long| format!("--{long}")))
            .filter(|flag| flag.starts_with(partial))
            .collect();
        return (flags, NO_FILES);
    }
    let subcommands = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help")
        .map(|sub| sub.get_name().to_string())
        .filter(|name| name.starts_with(partial))
        .collect();
    (subcommands, NO_FILES)
}

/// The argument `flag` (`--output` or `-o`) names.
fn argument<'c>(command: &'c Command, flag: &str) -> Option<&'c clap::Arg> {
    command.get_arguments().find(|arg| match flag.strip_prefix("--") {
        Some(long) => arg.get_long() == Some(long),
        None => {
            flag.strip_prefix('-').and_then(|short| short.chars().next()).is_some_and(|c| arg.get_short() == Some(c))
        }
    })
}

fn takes_value(command: &Command, flag: &str) -> bool {
    argument(command, flag).is_some_and(|arg| arg.get_action().takes_values())
}

/// The values of `flag` starting with `partial`, when the flag has a fixed set of them.
fn value_candidates(command: &Command, flag: &str, partial: &str) -> Option<Vec<String>> {
    let arg = argument(command, flag).filter(|arg| arg.get_action().takes_values())?;
    let values = arg.get_possible_values();
    (!values.is_empty()).then(|| {
        values
            .iter()
            .filter(|value| !value.is_hide_set())
            .map(|value| value.get_name().to_string())
            .filter(|name| name.starts_with(partial))
            .collect()
    })
}

/// Started as `kubectl_complete-<plugin>`: prints the candidates for the arguments and exits.
pub fn answer_if_asked(command: &Command) {
    let mut args = std::env::args();
    let invoked = args.next().unwrap_or_default();
    let name = std::path::Path::new(&invoked).file_name().and_then(|name| name.to_str()).unwrap_or_default();
    if !name.starts_with(KUBECTL_COMPLETE_PREFIX) {
        return;
    }
    let words: Vec<String> = args.collect();
    let (candidates, directive) = candidates(command, &words);
    let mut text = candidates.join("\n");
    text.push_str(&format!("\n:{directive}\n"));
    // A closed pipe is not a failure of ours.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.trim_start_matches('\n').as_bytes());
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use clap::{Arg, ArgAction};

    use super::*;

    fn command() -> Command {
        Command::new("oc-ambient-waypoint")
            .arg(Arg::new("output").short('o').long("output").value_parser(["table", "json", "yaml"]))
            .arg(Arg::new("kubeconfig").long("kubeconfig"))
            .arg(Arg::new("yes").short('y').long("yes").action(ArgAction::SetTrue))
            .arg(Arg::new("secret").long("secret-flag").hide(true))
            .subcommand(Command::new("convert").arg(Arg::new("verify").long("verify").action(ArgAction::SetTrue)))
    }

    fn words(text: &[&str]) -> Vec<String> {
        text.iter().map(|word| word.to_string()).collect()
    }

    #[test]
    fn flags_values_and_subcommands_are_completed_from_the_command() {
        let command = command();
        assert_eq!(candidates(&command, &words(&["--ku"])), (words(&["--kubeconfig"]), NO_FILES));
        assert_eq!(candidates(&command, &words(&["-o", "j"])), (words(&["json"]), NO_FILES));
        assert_eq!(candidates(&command, &words(&["--output", ""])), (words(&["table", "json", "yaml"]), NO_FILES));
        assert_eq!(candidates(&command, &words(&["--output=y"])), (words(&["--output=yaml"]), NO_FILES));
        assert_eq!(candidates(&command, &words(&["--kubeconfig", "/tm"])), (Vec::new(), FILES), "a path: files");
        assert_eq!(candidates(&command, &words(&["co"])), (words(&["convert"]), NO_FILES));
        assert_eq!(candidates(&command, &words(&["convert", "--v"])), (words(&["--verify"]), NO_FILES));
        assert_eq!(candidates(&command, &words(&["-y", "--sec"])), (Vec::new(), NO_FILES), "hidden flags stay hidden");
        assert_eq!(candidates(&command, &[]).0, words(&["convert"]));
    }
}
