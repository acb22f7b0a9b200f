//! `eventyard convert`: apply converter rules to a body on stdin and print
//! the fields as JSON, so operators can try `converter_rules` before
//! writing them to `ey_receive_config`. With `--send`, the reverse: a JSON
//! value on stdin, the body the send side would publish on stdout.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use eventyard_converter::{BodyFormat, ConvertError, Kind, Registry, Rules, SendContext};
use tokio::io::AsyncReadExt;

use super::{CliError, Global};

/// Arguments of `eventyard convert`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  eventyard convert --rules acct.toml < record.txt
  eventyard convert --converter xml < body.xml
  echo '{\"a\":\"1\",\"b\":\"2\"}' | eventyard convert --rules ab.toml --send

The rules file holds exactly what goes into ey_receive_config.converter_rules
(see docs/converters.md). Non-UTF-8 input: iconv -f GBK -t UTF-8 < file | eventyard convert ...")]
pub(crate) struct Args {
    /// Rules file (TOML, as stored in ey_receive_config.converter_rules).
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Converter id (xml, delimited, multi_delimited, fixed_width); defaults to the rules' `kind`.
    #[arg(long, value_name = "ID")]
    converter: Option<String>,
    /// Format of the body on stdin; defaults to xml for the xml converter, text otherwise.
    #[arg(long, value_name = "FORMAT", value_parser = ["xml", "text"])]
    format: Option<String>,
    /// Render instead: read a JSON value on stdin, print the body the send side would produce.
    #[arg(long)]
    send: bool,
    /// Event type for --send (the xml converter names its root element after it unless the rules set `root`).
    #[arg(long, value_name = "EVENT_TYPE", default_value = "", requires = "send")]
    event_type: String,
}

/// Runs `eventyard convert`.
pub(crate) async fn run(args: Args, global: &Global) -> Result<ExitCode, CliError> {
    let rules =
        match &args.rules {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                CliError::io(format!("cannot read rules file {}", path.display()), e)
            })?),
            None => None,
        };
    let origin = args.rules.as_ref().map(|p| p.display().to_string());
    let failed = |err: ConvertError| match &origin {
        Some(file) => CliError::Failed(format!("{file}: {err}")),
        None => CliError::Failed(err.to_string()),
    };

    let converter = match (&args.converter, &rules) {
        (Some(id), _) => id.clone(),
        (None, Some(text)) => match Rules::declared_kind(text).map_err(failed)? {
            Some(kind) => kind.id().to_owned(),
            None => {
                return Err(CliError::Usage(format!(
                    "{} does not name its kind; add `kind = \"...\"` to it or pass --converter \
                     (xml, delimited, multi_delimited, fixed_width)",
                    origin.as_deref().unwrap_or("the rules file")
                )))
            }
        },
        (None, None) => {
            return Err(CliError::Usage(
                "nothing to convert with; pass --rules FILE, or --converter xml for the default XML mapping"
                    .into(),
            ))
        }
    };

    let mut input = Vec::new();
    tokio::io::stdin()
        .read_to_end(&mut input)
        .await
        .map_err(|e| CliError::io("cannot read stdin", e))?;
    let input = String::from_utf8(input).map_err(|e| {
        CliError::Failed(format!(
            "stdin is not UTF-8 (invalid byte at {}); convert it first, e.g. iconv -f GBK -t UTF-8",
            e.utf8_error().valid_up_to()
        ))
    })?;

    let registry = Registry::with_builtins();
    let mut stdout = std::io::stdout().lock();
    if args.send {
        let value: serde_json::Value = serde_json::from_str(&input)
            .map_err(|e| CliError::Failed(format!("stdin is not valid JSON: {e}")))?;
        let body = registry
            .send_for(&converter, rules.as_deref())
            .and_then(|c| c.to_body(&SendContext::new(&args.event_type, &converter), &value))
            .map_err(failed)?;
        writeln!(stdout, "{}", body.content).map_err(|e| CliError::io("cannot write stdout", e))?;
        return Ok(ExitCode::SUCCESS);
    }

    let format = match args.format.as_deref() {
        Some(f) => f
            .parse::<BodyFormat>()
            .map_err(|e| CliError::Usage(e.to_string()))?,
        None => Kind::from_id(&converter).map_or(BodyFormat::Text, Kind::format),
    };
    let fields = registry
        .receive_for(&converter, rules.as_deref())
        .map_err(failed)?
        .convert(format, &input)
        .map_err(|e| CliError::Failed(format!("stdin: {e}")))?;
    let written = if global.json {
        serde_json::to_writer(&mut stdout, &fields)
    } else {
        serde_json::to_writer_pretty(&mut stdout, &fields)
    };
    written
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(stdout))
        .map_err(|e| CliError::io("cannot write stdout", e))?;
    Ok(ExitCode::SUCCESS)
}
