//! `convert --verify`: the conversion's effect on who may call what and who serves it.
//!
//! The input as it runs today is compared with the input after the conversion's changes (items
//! applied, replaced objects deleted, labels set) in the fully migrated state, or in the state
//! `--state FILE` describes; see [`oc_ambient_common::equivalence`] for the model. The comparison
//! is the one convert's own verdict reads ([`oc_ambient_common::convert::verdict`]), so both
//! modes exit alike.

use oc_ambient_common::cli::OutputFormat;
use oc_ambient_common::convert::verdict::Verdict;
use oc_ambient_common::error::{Error, Exit};
use oc_ambient_common::printer::Printer;

/// Prints the verification (the `AmbientEquivalence` document with `-o json`, a table otherwise)
/// and the verdict's reasons, and returns 0 when the verdict is faithful, 1 otherwise.
pub fn print_verification(printer: &Printer, output: OutputFormat, verdict: &Verdict) -> Result<Exit, Error> {
    let verification = &verdict.verification;
    for note in &verification.notes {
        printer.note(&format!("note: {note}"));
    }
    match output {
        OutputFormat::Json => printer.result(&serde_json::to_string_pretty(verification)?),
        OutputFormat::Table | OutputFormat::Yaml => {
            printer.result(&oc_ambient_common::render::verification_table(verification, printer))
        }
    }
    for reason in &verdict.reasons {
        printer.note(&format!("not faithful: {reason}"));
    }
    Ok(if verdict.is_faithful() { Exit::Success } else { Exit::NotReady })
}
