//! `convert --verify`: the conversion's effect on who may call what and who serves it.
//!
//! The input as it runs today is compared with the input after the conversion's changes (items
//! applied, replaced objects deleted, labels set) in the fully migrated state, or in the state
//! `--state FILE` describes; see [`oc_ambient_common::equivalence`] for the model.

use std::path::Path;

use oc_ambient_common::cli::OutputFormat;
use oc_ambient_common::convert::Conversion;
use oc_ambient_common::equivalence::MigrationState;
use oc_ambient_common::equivalence::verify::verify_change;
use oc_ambient_common::error::{Error, Exit};
use oc_ambient_common::printer::Printer;
use oc_ambient_common::snapshot::Snapshot;

/// Prints the verification (the `AmbientEquivalence` document with `-o json`, a table otherwise)
/// and returns 0 when no difference is unexpected, 1 otherwise.
pub fn verify_conversion(
    printer: &Printer,
    output: OutputFormat,
    input: &Snapshot,
    conversion: &Conversion,
    namespaces: &[String],
    state: Option<&Path>,
) -> Result<Exit, Error> {
    let state = state.map(MigrationState::from_file).transpose()?;
    let verification = verify_change(input, &conversion.changes(), namespaces, state.as_ref());
    for note in &verification.notes {
        printer.note(&format!("note: {note}"));
    }
    match output {
        OutputFormat::Json => printer.result(&serde_json::to_string_pretty(&verification)?),
        OutputFormat::Table | OutputFormat::Yaml => {
            printer.result(&oc_ambient_common::render::verification_table(&verification, printer))
        }
    }
    Ok(if verification.is_equivalent() { Exit::Success } else { Exit::NotReady })
}
