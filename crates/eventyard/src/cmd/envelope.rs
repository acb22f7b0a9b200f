//! `eventyard envelope pack|unpack`: build and inspect wire envelopes.
//!
//! Both read stdin and write stdout, so they compose with files, `amqp`
//! tools and each other: `eventyard envelope unpack --json < msg.bin |
//! eventyard envelope pack --compression none` re-packs a message as plain XML.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use eventyard_core::envelope::{Body, Codec, DateTime, Envelope, EnvelopeError, Limits, Utc, Uuid};
use eventyard_core::Compression;

use super::{CliError, Global};

/// Arguments of `eventyard envelope`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: EnvelopeCommand,
}

#[derive(Debug, clap::Subcommand)]
enum EnvelopeCommand {
    /// Pack an envelope read from stdin (JSON, or a raw body with header flags) to stdout.
    ///
    /// Without --event-type/--publisher, stdin is an envelope in JSON as printed by
    /// `envelope unpack --json`. With them, stdin is the body, taken verbatim.
    Pack(Box<PackArgs>),
    /// Unpack an envelope read from stdin and show it (JSON with --json).
    Unpack(UnpackArgs),
}

#[derive(Debug, clap::Args)]
struct PackArgs {
    /// Compression of the output [default: the JSON's content_encoding, or gzip].
    #[arg(long, value_parser = parse_compression)]
    compression: Option<Compression>,
    /// Event type code (raw-body mode; requires --publisher).
    #[arg(long, requires = "publisher")]
    event_type: Option<String>,
    /// Publishing system id (raw-body mode; requires --event-type).
    #[arg(long, requires = "event_type")]
    publisher: Option<String>,
    /// How the body on stdin is carried.
    #[arg(long, value_enum, default_value_t = BodyFormat::Xml)]
    body_format: BodyFormat,
    /// Producer id.
    #[arg(long)]
    producer_id: Option<String>,
    /// Stream name of a sequenced event (with --epoch and --seq).
    #[arg(long, requires_all = ["epoch", "seq"])]
    stream: Option<String>,
    /// Producer epoch (with --stream and --seq).
    #[arg(long, requires_all = ["stream", "seq"])]
    epoch: Option<u64>,
    /// Sequence number (with --stream and --epoch).
    #[arg(long, requires_all = ["stream", "epoch"])]
    seq: Option<u64>,
    /// Body schema version.
    #[arg(long, default_value_t = 1)]
    schema_version: u32,
    /// Event id (a UUID) instead of a fresh UUID v7.
    #[arg(long)]
    event_id: Option<Uuid>,
    /// Creation time (RFC 3339) instead of now.
    #[arg(long)]
    created_at: Option<DateTime<Utc>>,
    /// Trace id.
    #[arg(long)]
    trace_id: Option<String>,
    /// Business key.
    #[arg(long)]
    business_key: Option<String>,
    /// A free key/value for the common section, as KEY=VALUE (repeatable).
    #[arg(long = "entry", value_name = "KEY=VALUE", value_parser = parse_entry)]
    entries: Vec<(String, String)>,
    /// Write compressed output even when stdout is a terminal.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BodyFormat {
    /// A well-formed XML fragment, embedded as-is.
    Xml,
    /// Plain text (delimited or fixed-width records), escaped.
    Text,
}

#[derive(Debug, clap::Args)]
struct UnpackArgs {
    /// Print only the decompressed XML document, without parsing it.
    #[arg(long, conflicts_with = "body_only")]
    xml: bool,
    /// Print only the body.
    #[arg(long)]
    body_only: bool,
    #[command(flatten)]
    limits: LimitArgs,
}

/// Limits against hostile input; sizes take an optional KiB/MiB/GiB suffix.
#[derive(Debug, clap::Args)]
struct LimitArgs {
    /// Largest packed input accepted [default: 16MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_packed_size: Option<usize>,
    /// Largest decompressed XML accepted [default: 64MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_decompressed_size: Option<usize>,
    /// Deepest XML element nesting [default: 64].
    #[arg(long, value_name = "LEVELS")]
    max_depth: Option<usize>,
    /// Most attributes on one element [default: 256].
    #[arg(long, value_name = "COUNT")]
    max_attributes: Option<usize>,
    /// Most key/value entries in the common section [default: 1024].
    #[arg(long, value_name = "COUNT")]
    max_entries: Option<usize>,
}

impl LimitArgs {
    fn codec(&self) -> Codec {
        let mut limits = Limits::default();
        if let Some(v) = self.max_packed_size {
            limits = limits.max_packed_size(v);
        }
        if let Some(v) = self.max_decompressed_size {
            limits = limits.max_decompressed_size(v);
        }
        if let Some(v) = self.max_depth {
            limits = limits.max_depth(v);
        }
        if let Some(v) = self.max_attributes {
            limits = limits.max_attributes(v);
        }
        if let Some(v) = self.max_entries {
            limits = limits.max_entries(v);
        }
        Codec::new(limits)
    }
}

/// Runs `eventyard envelope`.
pub(crate) async fn run(args: Args, global: &Global) -> Result<ExitCode, CliError> {
    match args.command {
        EnvelopeCommand::Pack(args) => pack(*args),
        EnvelopeCommand::Unpack(args) => unpack(args, global),
    }
}

fn pack(args: PackArgs) -> Result<ExitCode, CliError> {
    let input = read_stdin()?;
    let env = match (&args.event_type, &args.publisher) {
        (Some(event_type), Some(publisher)) => {
            envelope_from_flags(&args, event_type, publisher, input)?
        }
        _ => {
            if header_flags_given(&args) {
                return Err(CliError::Usage(
                    "header flags need --event-type and --publisher; without them stdin must be an envelope in JSON".into(),
                ));
            }
            serde_json::from_slice::<Envelope>(&input).map_err(|e| {
                CliError::Failed(format!(
                    "stdin is not an envelope in JSON ({e}). Pipe in `eventyard envelope unpack --json`, \
                     or pass --event-type and --publisher to pack a raw body."
                ))
            })?
        }
    };
    let compression = args
        .compression
        .or(args.event_type.as_ref().map(|_| Compression::Gzip))
        .unwrap_or(env.header.content_encoding);
    if compression != Compression::None && std::io::stdout().is_terminal() && !args.force {
        return Err(CliError::Usage(format!(
            "refusing to write {compression}-compressed bytes to a terminal; redirect stdout, \
             use --compression none, or pass --force"
        )));
    }
    let packed = args
        .limits
        .codec()
        .pack_as(&env, compression)
        .map_err(core)?;
    write_stdout(&packed)?;
    Ok(ExitCode::SUCCESS)
}

fn header_flags_given(args: &PackArgs) -> bool {
    args.producer_id.is_some()
        || args.stream.is_some()
        || args.event_id.is_some()
        || args.created_at.is_some()
        || args.trace_id.is_some()
        || args.business_key.is_some()
        || !args.entries.is_empty()
}

fn envelope_from_flags(
    args: &PackArgs,
    event_type: &str,
    publisher: &str,
    input: Vec<u8>,
) -> Result<Envelope, CliError> {
    let body = String::from_utf8(input).map_err(|e| {
        CliError::Failed(format!(
            "the body on stdin is not UTF-8 (invalid byte at offset {}); envelopes carry UTF-8 only",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let mut builder = Envelope::builder(event_type, publisher).schema_version(args.schema_version);
    if let Some(id) = args.event_id {
        builder = builder.event_id(id);
    }
    if let Some(at) = args.created_at {
        builder = builder.created_at(at);
    }
    if let Some(producer) = &args.producer_id {
        builder = builder.producer_id(producer);
    }
    if let (Some(stream), Some(epoch), Some(seq)) = (&args.stream, args.epoch, args.seq) {
        builder = builder.sequence(stream, epoch, seq);
    }
    if let Some(trace) = &args.trace_id {
        builder = builder.trace_id(trace);
    }
    if let Some(key) = &args.business_key {
        builder = builder.business_key(key);
    }
    for (key, value) in &args.entries {
        builder = builder.entry(key, value);
    }
    Ok(builder.build(match args.body_format {
        BodyFormat::Xml => Body::Xml(body),
        BodyFormat::Text => Body::Text(body),
    }))
}

fn unpack(args: UnpackArgs, global: &Global) -> Result<ExitCode, CliError> {
    let input = read_stdin()?;
    let codec = args.limits.codec();
    if args.xml {
        let (_, xml) = codec.decompress(&input).map_err(core)?;
        write_stdout(&xml)?;
        return Ok(ExitCode::SUCCESS);
    }
    let env = codec.unpack(&input).map_err(core)?;
    if args.body_only {
        write_stdout(env.body.as_str().as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = if global.json {
        serde_json::to_string_pretty(&env)
            .map_err(|e| CliError::Failed(format!("cannot render the envelope as JSON: {e}")))?
    } else {
        human(&env, input.len())
    };
    text.push('\n');
    write_stdout(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The operator's view: one header/common field per line, then the body.
fn human(env: &Envelope, packed_len: usize) -> String {
    let h = &env.header;
    let c = &env.common;
    let mut rows: Vec<(&str, String)> = vec![
        ("event_id", h.event_id.to_string()),
        ("event_type", quote(&h.event_type)),
        ("publisher", quote(&h.publisher)),
        (
            "producer_id",
            h.producer_id.as_deref().map_or("-".into(), quote),
        ),
    ];
    match &h.sequence {
        Some(s) => {
            rows.push(("stream", quote(&s.stream)));
            rows.push(("epoch", s.epoch.to_string()));
            rows.push(("seq", s.seq.to_string()));
        }
        None => rows.push(("sequence", "- (not sequenced)".into())),
    }
    rows.push(("created_at", h.created_at_rfc3339()));
    rows.push((
        "content_encoding",
        format!("{} ({packed_len} bytes packed)", h.content_encoding),
    ));
    rows.push(("schema_version", h.schema_version.to_string()));
    rows.push(("trace_id", c.trace_id.as_deref().map_or("-".into(), quote)));
    rows.push((
        "business_key",
        c.business_key.as_deref().map_or("-".into(), quote),
    ));
    for entry in &c.entries {
        rows.push((
            "entry",
            format!("{} = {}", quote(&entry.key), quote(&entry.value)),
        ));
    }
    let mut out = String::new();
    for (name, value) in rows {
        out.push_str(&format!("{name:<17}{value}\n"));
    }
    let body = env.body.as_str();
    out.push_str(&format!(
        "body ({}, {} bytes):\n{body}",
        env.body.format(),
        body.len()
    ));
    out
}

/// Shows a value as-is when plain, or Rust-escaped in quotes when it has
/// surrounding whitespace or control characters an operator could not see.
fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value.trim() == value
        && !value.chars().any(char::is_control)
        && !value.contains('"');
    if plain {
        value.to_owned()
    } else {
        format!("{value:?}")
    }
}

fn core(err: EnvelopeError) -> CliError {
    CliError::Core(err.into())
}

fn read_stdin() -> Result<Vec<u8>, CliError> {
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut input)
        .map_err(|e| CliError::io("cannot read stdin", e))?;
    Ok(input)
}

fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("cannot write stdout", e))
}

fn parse_compression(value: &str) -> Result<Compression, String> {
    value
        .parse()
        .map_err(|e: eventyard_core::compression::UnknownCompression| e.to_string())
}

fn parse_entry(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, val)) if !key.is_empty() => Ok((key.to_owned(), val.to_owned())),
        _ => Err(format!("`{value}` is not KEY=VALUE with a non-empty KEY")),
    }
}

/// A byte size: digits with an optional K/KiB, M/MiB or G/GiB suffix (powers of 1024).
fn parse_size(value: &str) -> Result<usize, String> {
    let value = value.trim();
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let multiplier: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use KiB, MiB or GiB)")),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("`{value}` is not a size such as 65536, 512KiB or 64MiB"))
}
