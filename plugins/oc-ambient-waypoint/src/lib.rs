//! `oc ambient-waypoint`: deploy waypoints, convert VirtualServices, DestinationRules and
//! AuthorizationPolicies, activate waypoints and clean up.
//!
//! `convert` reads YAML/JSON dumps, or the live cluster when no file is given (the same list
//! calls as the check), runs the translation engine ([`oc_ambient_common::convert`]) and prints
//! the generated objects and the report; it never changes the cluster. With namespaces, the live
//! steps (deploy, migrate, activate, clean up: Steps 4, 5, 7 and 8) are planned by the core's
//! waypoint planner and run through the change engine; with neither, the plugin connects and says
//! what it needs.
//!
//! `-n` is the suite's global namespace flag. For `convert` it may be repeated (`-n a -n b`): the
//! plugin turns the global flag into an appending one when it builds its command line (see
//! [`command`]), so other plugins keep kubectl's single `-n`, and `convert` gets the interface the
//! issue asks for. Objects without a namespace in the input (the upstream samples) are put in the
//! first `-n` namespace, as `kubectl apply -n NS -f` would.

use std::path::PathBuf;

use clap::{ArgAction, ArgMatches, Args, Parser, Subcommand};
use oc_ambient_common::cli::{ChangeArgs, GlobalArgs, InputLimitArgs, OutputFormat};
use oc_ambient_common::convert::verdict::judge;
use oc_ambient_common::convert::{ConvertOptions, convert};
use oc_ambient_common::equivalence::MigrationState;
use oc_ambient_common::error::{Error, Exit};
use oc_ambient_common::plan::waypoint::{WaypointIntent, WaypointUntil, plan_waypoint};
use oc_ambient_common::printer::Printer;

mod verify;

const BINARY: &str = "oc-ambient-waypoint";

/// Deploy waypoints (Step 4), migrate VirtualServices, DestinationRules and AuthorizationPolicies
/// next to the sidecar-era configuration (Step 5), activate waypoints (Step 7) and delete the
/// replaced configuration no sidecar reads any more (Step 8), each namespace as far as the guide's
/// gates allow; `convert` previews the translation.
///
/// Nothing changes without a plan shown first and consent (a prompt on a terminal, or --yes).
/// A conversion that is not faithful is refused with the report; each loss has an id
/// (unsupported:<Kind>/<ns>/<name>:<field>) that --accept takes to migrate without it.
/// Exit codes: 0 done (or stopped at a gate, printed with the next command), 1 refused (a gate,
/// an unfaithful conversion, a window not accepted, no consent), 2 could not finish.
///
/// Examples:
///   oc ambient-waypoint bookinfo --dry-run        # the plan for Steps 4, 5, 7 and 8
///   oc ambient-waypoint bookinfo --yes            # deploy and migrate; activate once enrolled
///   oc ambient-waypoint convert -n bookinfo --verify
#[derive(Debug, Parser)]
#[command(version, about, long_about, verbatim_doc_comment, subcommand_precedence_over_arg = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(flatten)]
    pub change: ChangeArgs,
    /// Namespaces to take through the waypoint steps.
    #[arg(value_name = "NAMESPACE")]
    pub targets: Vec<String>,
    /// Name of the waypoint (default: the namespace's, else `waypoint`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Stop once the namespaces reach this phase.
    #[arg(long, value_enum, value_name = "PHASE")]
    pub until: Option<UntilPhase>,
    /// Run only this step of the guide.
    #[arg(long, value_name = "N", value_parser = ["4", "5", "7", "8"])]
    pub step: Option<String>,
    /// Step 4 also creates a PodMonitor (monitoring.coreos.com/v1) scraping each waypoint,
    /// journalled like every change so rollback removes it.
    #[arg(long)]
    pub monitoring: bool,
    /// Step 4 also sets each waypoint's recommended sizing (replicas, resources, a
    /// PodDisruptionBudget; see `oc ambient-check`'s waypoint-sizing) through the Gateway's
    /// spec.infrastructure.parametersRef, journalled like every change.
    #[arg(long)]
    pub size: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Every `-n` given (the global flag keeps only the first).
    #[arg(skip)]
    pub namespaces: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Convert sidecar-era configuration (VirtualServices, DestinationRules, selector policies) to
    /// ambient resources, from files or (without -f/--from-dir) from the live cluster; changes nothing. Prints the objects on stdout (`-o yaml`, the default, for
    /// `oc apply -f -`; `-o json` for the full report) and the report on stderr. Exit 0: converted
    /// faithfully (every field carried over, and the verifier finds no request whose outcome the
    /// converted objects change); 1: not (the rest is printed, with the reasons); 2: error.
    Convert(ConvertArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    /// Read every *.yaml, *.yml and *.json file under DIR (recursively).
    #[arg(long, value_name = "DIR", conflicts_with = "filename")]
    pub from_dir: Option<PathBuf>,
    /// Read FILE (a file, a directory, or `-` for stdin); repeat for more.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: Vec<PathBuf>,
    /// Name of the waypoint to use and, where missing, to generate (default: the input's, else `waypoint`).
    #[arg(long, value_name = "NAME")]
    pub waypoint: Option<String>,
    /// The mesh trust domain (default: the Istio resource's meshConfig.trustDomain, else cluster.local).
    #[arg(long, value_name = "TD")]
    pub trust_domain: Option<String>,
    /// Instead of the objects, compare who may call what, and who serves it, in the input as it
    /// runs today and in the input plus the converted objects, fully migrated. Prints every
    /// difference (`-o json`: the AmbientEquivalence document). Exits like convert itself: 0 only
    /// when nothing is unsupported, no difference is unexpected and nothing was left out.
    #[arg(long)]
    pub verify: bool,
    /// With --verify: the migration state to evaluate instead of the end (YAML lists of namespaces:
    /// enrolled, waypoints, sidecars).
    #[arg(long, value_name = "FILE", requires = "verify")]
    pub state: Option<PathBuf>,
    #[command(flatten)]
    pub limits: InputLimitArgs,
}

/// The command line, with the global `-n` made repeatable (see the module docs).
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command().mut_arg("namespace", |arg| {
        arg.action(ArgAction::Append).help("Namespace to act on; repeat for convert to convert several")
    })
}

/// Parses the command line like [`oc_ambient_common::app::parse`], keeping every `-n`.
pub fn parse() -> Cli {
    let name = oc_ambient_common::cli::current_invocation(BINARY);
    let mut command = oc_ambient_common::app::with_completion(command()).bin_name(name.clone()).name(name);
    oc_ambient_common::app::print_completion_if_asked(&mut command, BINARY);
    let matches = command.get_matches_mut();
    from_matches(&matches).unwrap_or_else(|err| err.format(&mut command).exit())
}

/// Builds the [`Cli`] from parsed matches (separate from [`parse`] for tests).
pub fn from_matches(matches: &ArgMatches) -> Result<Cli, clap::Error> {
    let mut cli = <Cli as clap::FromArgMatches>::from_arg_matches(matches)?;
    let scoped = matches.subcommand().map(|(_, sub)| sub).unwrap_or(matches);
    cli.namespaces = scoped.get_many::<String>("namespace").map(|all| all.cloned().collect()).unwrap_or_default();
    Ok(cli)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UntilPhase {
    Deployed,
    PoliciesMigrated,
    Active,
    Cleaned,
}

pub async fn run(cli: Cli) -> Result<Exit, Error> {
    match &cli.command {
        Some(Command::Convert(args)) => run_convert(&cli.global, &cli.namespaces, args).await,
        None if cli.targets.is_empty() => connect_then_refuse(&cli.global).await,
        None => run_steps(&cli).await,
    }
}

/// Steps 4, 5, 7 and 8 for the named namespaces, through the change engine.
async fn run_steps(cli: &Cli) -> Result<Exit, Error> {
    let oc_ambient_common::live::Session { printer, connection, snapshot } =
        oc_ambient_common::live::open_session(&cli.global).await?;
    let intent = WaypointIntent {
        namespaces: cli.targets.clone(),
        name: cli.name.clone(),
        until: match cli.until.unwrap_or(UntilPhase::Cleaned) {
            UntilPhase::Deployed => WaypointUntil::Deployed,
            UntilPhase::PoliciesMigrated => WaypointUntil::PoliciesMigrated,
            UntilPhase::Active => WaypointUntil::Active,
            UntilPhase::Cleaned => WaypointUntil::Cleaned,
        },
        only_step: cli.step.as_deref().and_then(|step| step.parse().ok()),
        accepted: cli.change.accept.clone(),
        monitoring: cli.monitoring,
        size: cli.size,
    };
    let plan = plan_waypoint(&snapshot, &intent)?;
    let options = cli.change.options(cli.global.output, &connection.server);
    oc_ambient_common::engine::gate_and_run(&connection, &printer, &snapshot, None, plan, intent.only_step, &options)
        .await?;
    printer.detail(&format!("{} API requests", connection.requests()));
    Ok(Exit::Success)
}

async fn connect_then_refuse(global: &GlobalArgs) -> Result<Exit, Error> {
    oc_ambient_common::app::connect_then_refuse(global, BINARY, "waypoint deployment").await
}

async fn run_convert(global: &GlobalArgs, namespaces: &[String], args: &ConvertArgs) -> Result<Exit, Error> {
    let printer = Printer::new(global);
    let paths: Vec<PathBuf> = args.from_dir.iter().chain(args.filename.iter()).cloned().collect();
    let mut snapshot = if paths.is_empty() {
        // Every namespace is read: callers in other namespaces decide the bypass protection.
        let connection = oc_ambient_common::client::connect(global, &printer).await?;
        let options = oc_ambient_common::live::LoadOptions::default();
        oc_ambient_common::live::load_with_progress(&connection, &printer, &options).await?
    } else {
        oc_ambient_common::input::read_snapshot(&paths, &args.limits.limits(), oc_ambient_common::fields::Fields::All)?
    };
    if let Some(first) = namespaces.first() {
        snapshot.default_namespace(first);
    } else {
        let unplaced = oc_ambient_common::kinds::ALL
            .iter()
            .filter(|info| info.namespaced)
            .flat_map(|info| snapshot.all(info.kind))
            .filter(|object| object.metadata.namespace.is_none())
            .count();
        if unplaced > 0 {
            printer.note(&format!(
                "note: {unplaced} object(s) of the input name no namespace and are not converted; pass -n NS to place them"
            ));
        }
    }
    for note in &snapshot.notes {
        printer.detail(note);
    }
    // The trust domain describes the input, so the conversion and its verification read it alike.
    snapshot.trust_domain = args.trust_domain.clone();
    let options = ConvertOptions { namespaces: namespaces.to_vec(), waypoint: args.waypoint.clone() };
    let conversion = convert(&snapshot, &options);
    // One verdict (issue 16): the objects are verified whether or not --verify asks to see the
    // comparison, and both modes exit by the same judgement.
    let state = args.state.as_deref().map(MigrationState::from_file).transpose()?;
    let verdict = judge(&snapshot, &conversion, namespaces, state.as_ref());
    if args.verify {
        return verify::print_verification(&printer, global.output, &verdict);
    }
    match global.output {
        OutputFormat::Json => {
            let text = serde_json::to_string_pretty(&conversion.to_json_judged(&verdict))?;
            printer.result(&text);
        }
        // `table` is the suite-wide default; for convert the useful default is the apply stream.
        OutputFormat::Yaml | OutputFormat::Table => {
            let stream = conversion.to_yaml_stream()?;
            if !stream.is_empty() {
                printer.result(&stream);
            }
            printer.note(&conversion.judged_report_text(&verdict));
        }
    }
    Ok(if verdict.is_faithful() { Exit::Success } else { Exit::NotReady })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Cli, clap::Error> {
        let matches = command().try_get_matches_from(args)?;
        from_matches(&matches)
    }

    #[test]
    fn convert_accepts_repeated_namespaces_and_files() {
        let cli = parse_args(&["w", "convert", "-f", "a.yaml", "-f", "b.yaml", "-n", "a", "-n", "b", "-o", "json"])
            .expect("valid command line");
        assert_eq!(cli.namespaces, vec!["a", "b"]);
        assert_eq!(cli.global.namespace.as_deref(), Some("a"));
        assert_eq!(cli.global.output, OutputFormat::Json);
        let Some(Command::Convert(args)) = cli.command else { panic!("convert expected") };
        assert_eq!(args.filename.len(), 2);

        let cli = parse_args(&["w", "-n", "x", "convert", "--from-dir", "d"]).expect("valid command line");
        assert_eq!(cli.namespaces, vec!["x"], "a -n before the subcommand counts too");
    }

    #[test]
    fn convert_reads_files_or_a_directory_or_the_cluster() {
        assert!(parse_args(&["w", "convert"]).is_ok(), "no input: the live cluster");
        assert!(parse_args(&["w", "convert", "--from-dir", "d", "-f", "x"]).is_err());
        assert!(parse_args(&["w"]).is_ok(), "without a subcommand or namespace the plugin connects and refuses");
        let steps = parse_args(&["w", "bookinfo", "shop", "--yes"]).expect("namespaces for the live steps");
        assert_eq!(steps.targets, vec!["bookinfo", "shop"]);
        assert!(steps.command.is_none() && steps.change.yes);
    }
}
