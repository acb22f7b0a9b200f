//! `eventyard seq`: sequence tracking tools.
//!
//! `seq simulate` replays a JSON-lines trace through the sequence tracker
//! (`eventyard-seq`) and prints what it would do; the trace and output
//! formats are documented in `docs/sequencing.md`.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::Subcommand;
use eventyard_seq::{Action, Alert, Counters, Input, Mode, Params, Request, Source, Trackers};
use serde::{Deserialize, Serialize};

use super::{CliError, Global};

/// Arguments of `eventyard seq`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: SeqCommand,
}

/// The `seq` subcommands.
#[derive(Debug, Subcommand)]
enum SeqCommand {
    /// Replay a JSON-lines trace (stdin) through the sequence tracker and
    /// print its actions as JSON lines (stdout), then one state line per key.
    Simulate(SimulateArgs),
    /// Show the consumer state of every sequenced stream (ey_stream_state):
    /// epoch, last applied seq, mode, lag behind the producer's outbox.
    Status(StatusArgs),
    /// Force a snapshot for one stream: the running daemon applies the
    /// producer's stored snapshot (ey_snapshot) and resumes from it.
    Resync(ResyncArgs),
    /// Show who holds which partition of partitioned sequenced rows
    /// (ey_seq_partition_lease) and the live instances (ey_seq_member).
    Partitions(PartitionsArgs),
}

/// Arguments of `eventyard seq partitions`.
#[derive(Debug, clap::Args)]
struct PartitionsArgs {
    /// Only this subscriber system.
    #[arg(long)]
    subscriber: Option<String>,
}

/// Arguments of `eventyard seq status`.
#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// Only this subscriber system.
    #[arg(long)]
    subscriber: Option<String>,
    /// Only this producer.
    #[arg(long)]
    producer: Option<String>,
    /// Only this stream.
    #[arg(long)]
    stream: Option<String>,
}

/// Arguments of `eventyard seq resync`.
#[derive(Debug, clap::Args)]
struct ResyncArgs {
    /// The producer id.
    #[arg(long)]
    producer: String,
    /// The stream.
    #[arg(long)]
    stream: String,
    /// Only this subscriber (default: every subscriber tracking the stream).
    #[arg(long)]
    subscriber: Option<String>,
}

/// Arguments of `eventyard seq simulate`: the tracker parameters.
#[derive(Debug, clap::Args)]
struct SimulateArgs {
    /// Missing-range size at which a gap is recovered at once.
    #[arg(long, value_name = "N", default_value_t = Params::DEFAULT.window_count)]
    window_count: u64,
    /// How long (logical ms) a gap is held before a tick recovers it.
    #[arg(long, value_name = "MS", default_value_t = Params::DEFAULT.window_ms)]
    window_ms: u64,
    /// Largest missing range fetched; larger ones take a snapshot.
    #[arg(long, value_name = "N", default_value_t = Params::DEFAULT.max_fetch)]
    max_fetch: u64,
    /// Out-of-order messages held per key.
    #[arg(long, value_name = "N", default_value_t = Params::DEFAULT.buffer)]
    buffer: usize,
    /// Failed fetches in a row before falling back to a snapshot.
    #[arg(long, value_name = "N", default_value_t = Params::DEFAULT.fetch_tries)]
    fetch_tries: u32,
}

impl SimulateArgs {
    fn params(&self) -> Params {
        Params::DEFAULT
            .with_window_count(self.window_count)
            .with_window_ms(self.window_ms)
            .with_max_fetch(self.max_fetch)
            .with_buffer(self.buffer)
            .with_fetch_tries(self.fetch_tries)
    }
}

/// Runs `eventyard seq`.
pub(crate) async fn run(args: Args, global: &Global) -> Result<ExitCode, CliError> {
    match args.command {
        SeqCommand::Status(args) => status(args, global).await,
        SeqCommand::Resync(args) => resync(args, global).await,
        SeqCommand::Partitions(args) => partitions(args, global).await,
        SeqCommand::Simulate(args) => {
            let params = args.params();
            // Plain blocking stdio: the simulation is CPU and pipe bound, and
            // keeping it off the async workers keeps the runtime honest.
            tokio::task::spawn_blocking(move || {
                let stdin = std::io::stdin();
                let stdout = std::io::stdout();
                simulate(params, stdin.lock(), std::io::BufWriter::new(stdout.lock()))
            })
            .await
            .map_err(|err| CliError::Failed(format!("simulation aborted: {err}")))??;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A stream: producer and stream name.
type Key = (String, String);

/// One input line of a trace. Exactly one of the optional fields is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceLine {
    t: u64,
    msg: Option<TraceMsg>,
    heartbeat: Option<TraceHeartbeat>,
    tick: Option<bool>,
    fetch_ok: Option<TraceFetchOk>,
    fetch_err: Option<TraceKey>,
    snapshot: Option<TraceSnapshot>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceMsg {
    producer: String,
    stream: String,
    epoch: u64,
    seq: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceHeartbeat {
    producer: String,
    stream: String,
    epoch: u64,
    next: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceFetchOk {
    producer: String,
    stream: String,
    seqs: Vec<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceKey {
    producer: String,
    stream: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceSnapshot {
    producer: String,
    stream: String,
    epoch: u64,
    seq: u64,
}

/// What one trace line asks for.
enum Event {
    Keyed(Key, Input<()>),
    Tick,
}

const EVENT_FIELDS: &str = "msg, heartbeat, tick, fetch_ok, fetch_err, snapshot";

impl TraceLine {
    fn into_event(self) -> Result<Event, String> {
        let mut events = Vec::with_capacity(1);
        if let Some(m) = self.msg {
            events.push(Event::Keyed(
                (m.producer, m.stream),
                Input::Message {
                    epoch: m.epoch,
                    seq: m.seq,
                    payload: (),
                },
            ));
        }
        if let Some(h) = self.heartbeat {
            events.push(Event::Keyed(
                (h.producer, h.stream),
                Input::Heartbeat {
                    epoch: h.epoch,
                    next: h.next,
                },
            ));
        }
        if let Some(tick) = self.tick {
            if !tick {
                return Err("\"tick\" must be true".into());
            }
            events.push(Event::Tick);
        }
        if let Some(f) = self.fetch_ok {
            let rows = f.seqs.into_iter().map(|seq| (seq, ())).collect();
            events.push(Event::Keyed((f.producer, f.stream), Input::FetchOk(rows)));
        }
        if let Some(f) = self.fetch_err {
            events.push(Event::Keyed((f.producer, f.stream), Input::FetchErr));
        }
        if let Some(s) = self.snapshot {
            events.push(Event::Keyed(
                (s.producer, s.stream),
                Input::Snapshot {
                    epoch: s.epoch,
                    seq: s.seq,
                },
            ));
        }
        match (events.pop(), events.is_empty()) {
            (Some(event), true) => Ok(event),
            _ => Err(format!("expected exactly one of {EVENT_FIELDS}")),
        }
    }
}

/// One output line: `t`, `action`, the key, then the action's own fields.
#[derive(Serialize)]
struct OutLine<'a, B> {
    t: u64,
    action: &'static str,
    producer: &'a str,
    stream: &'a str,
    #[serde(flatten)]
    body: B,
}

#[derive(Serialize)]
struct ApplyBody {
    epoch: u64,
    seq: u64,
    from: Source,
}

#[derive(Serialize)]
struct SnapshotBody {
    epoch: u64,
    seq: u64,
}

#[derive(Serialize)]
struct RangeBody {
    from: u64,
    to: u64,
}

#[derive(Serialize)]
struct NoBody {}

#[derive(Serialize)]
struct StateBody<'a> {
    epoch: u64,
    last: Option<u64>,
    mode: Mode,
    buffered: Vec<u64>,
    hwm: u64,
    in_flight: Option<Request>,
    counters: &'a Counters,
}

/// Writes JSON lines, turning errors into [`CliError`]s.
struct Output<W> {
    writer: W,
}

impl<W: Write> Output<W> {
    fn line<B: Serialize>(
        &mut self,
        t: u64,
        action: &'static str,
        key: &Key,
        body: B,
    ) -> Result<(), CliError> {
        let line = OutLine {
            t,
            action,
            producer: &key.0,
            stream: &key.1,
            body,
        };
        serde_json::to_writer(&mut self.writer, &line)
            .map_err(|err| CliError::io("writing stdout", err.into()))?;
        self.writer
            .write_all(b"\n")
            .map_err(|err| CliError::io("writing stdout", err))
    }

    fn action(&mut self, t: u64, key: &Key, action: &Action<()>) -> Result<(), CliError> {
        match *action {
            Action::Apply {
                epoch, seq, from, ..
            } => self.line(t, "apply", key, ApplyBody { epoch, seq, from }),
            Action::ApplySnapshot { epoch, seq } => {
                self.line(t, "apply_snapshot", key, SnapshotBody { epoch, seq })
            }
            Action::RequestFetch { from, to, .. } => {
                self.line(t, "request_fetch", key, RangeBody { from, to })
            }
            Action::RequestSnapshot => self.line(t, "request_snapshot", key, NoBody {}),
            Action::Alert(alert) => self.line::<Alert>(t, "alert", key, alert),
        }
    }
}

/// Replays the trace read from `input` and writes the actions to `output`.
/// A malformed line stops the replay with an error naming its number.
fn simulate<R: BufRead, W: Write>(params: Params, input: R, output: W) -> Result<(), CliError> {
    let mut trackers: Trackers<Key, ()> = Trackers::new(params);
    let mut out = Output { writer: output };
    let mut actions = Vec::new();
    let mut fired = Vec::new();
    let mut t_last = 0;
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line = line.map_err(|err| CliError::Failed(format!("line {number}: {err}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let trace: TraceLine = serde_json::from_str(&line)
            .map_err(|err| CliError::Failed(format!("line {number}: {}", json_error(&err))))?;
        let t = trace.t;
        t_last = t;
        match trace
            .into_event()
            .map_err(|err| CliError::Failed(format!("line {number}: {err}")))?
        {
            Event::Keyed(key, input) => {
                trackers.handle(t, &key, input, &mut actions);
                for action in actions.drain(..) {
                    out.action(t, &key, &action)?;
                }
            }
            Event::Tick => {
                trackers.tick(t, |key, action| fired.push((key.clone(), action)));
                for (key, action) in fired.drain(..) {
                    out.action(t, &key, &action)?;
                }
            }
        }
    }
    for (key, tracker) in trackers.iter() {
        let state = StateBody {
            epoch: tracker.epoch(),
            last: tracker.last(),
            mode: tracker.mode(),
            buffered: tracker.buffered().collect(),
            hwm: tracker.hwm(),
            in_flight: tracker.in_flight(),
            counters: tracker.counters(),
        };
        out.line(t_last, "state", key, state)?;
    }
    out.writer
        .flush()
        .map_err(|err| CliError::io("writing stdout", err))
}

/// A serde_json error without its "at line 1 column N" suffix (the trace
/// line number is what matters), but with the column.
fn json_error(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let message = match text.rfind(" at line ") {
        Some(cut) => &text[..cut],
        None => &text,
    };
    format!("{message} (column {})", err.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(params: Params, trace: &str) -> Result<String, String> {
        let mut output = Vec::new();
        simulate(params, trace.as_bytes(), &mut output).map_err(|e| e.to_string())?;
        Ok(String::from_utf8(output).unwrap())
    }

    #[test]
    fn a_reordered_pair() {
        let out = run(
            Params::default(),
            r#"{"t":0,"msg":{"producer":"p","stream":"s","epoch":1,"seq":2}}
{"t":1,"msg":{"producer":"p","stream":"s","epoch":1,"seq":1}}
"#,
        )
        .unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            r#"{"t":0,"action":"alert","producer":"p","stream":"s","epoch":1,"from":1,"to":1,"hwm":2}"#
        );
        assert_eq!(
            lines[1],
            r#"{"t":1,"action":"apply","producer":"p","stream":"s","epoch":1,"seq":1,"from":"live"}"#
        );
        assert_eq!(
            lines[2],
            r#"{"t":1,"action":"apply","producer":"p","stream":"s","epoch":1,"seq":2,"from":"buffer"}"#
        );
        assert!(lines[3].starts_with(r#"{"t":1,"action":"state","producer":"p","stream":"s","epoch":1,"last":2,"mode":"synced","buffered":[],"hwm":2,"in_flight":null,"counters":{"dup":0,"gaps":1,"#));
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn bad_lines_name_their_number() {
        let ok = r#"{"t":0,"tick":true}"#;
        for (bad, wanted) in [
            ("{", "line 2: EOF while parsing an object (column 1)"),
            (r#"{"t":1}"#, "line 2: expected exactly one of"),
            (
                r#"{"t":1,"tick":true,"fetch_err":{"producer":"p","stream":"s"}}"#,
                "line 2: expected exactly one of",
            ),
            (r#"{"t":1,"tick":false}"#, "line 2: \"tick\" must be true"),
            (r#"{"t":-1,"tick":true}"#, "line 2: invalid value"),
            (
                r#"{"t":1,"msg":{"producer":"p","stream":"s","epoch":1,"seq":18446744073709551616}}"#,
                "line 2: ",
            ),
            (
                r#"{"t":1,"msg":{"producer":"p","stream":"s","epoch":1,"sequence":1}}"#,
                "line 2: unknown field `sequence`",
            ),
            (
                r#"{"t":1,"snapshot":{"producer":"p","stream":"s","epoch":1}}"#,
                "line 2: missing field `seq`",
            ),
        ] {
            let err = run(Params::default(), &format!("{ok}\n{bad}\n")).unwrap_err();
            assert!(err.starts_with(wanted), "{bad}: {err}");
        }
    }

    #[test]
    fn blank_lines_and_empty_input() {
        assert_eq!(run(Params::default(), "").unwrap(), "");
        assert_eq!(run(Params::default(), "\n  \n").unwrap(), "");
    }

    #[test]
    fn extreme_numbers_do_not_panic() {
        let max = u64::MAX;
        let trace = format!(
            "{{\"t\":{max},\"msg\":{{\"producer\":\"p\",\"stream\":\"s\",\"epoch\":{max},\"seq\":{max}}}}}\n\
             {{\"t\":{max},\"heartbeat\":{{\"producer\":\"p\",\"stream\":\"s\",\"epoch\":{max},\"next\":0}}}}\n\
             {{\"t\":{max},\"snapshot\":{{\"producer\":\"p\",\"stream\":\"s\",\"epoch\":{max},\"seq\":{max}}}}}\n\
             {{\"t\":{max},\"tick\":true}}\n"
        );
        let out = run(Params::default().with_window_ms(max), &trace).unwrap();
        assert!(out.contains(r#""action":"apply_snapshot""#), "{out}");
    }
}

/// One row of `seq status`.
#[derive(Debug, Serialize)]
struct StatusRow {
    subscriber: String,
    producer: String,
    stream: String,
    epoch: i64,
    last: i64,
    mode: String,
    /// The producer's highest seq of this epoch in ey_outbox (same database).
    producer_seq: Option<i64>,
    /// `producer_seq − last`.
    lag: Option<i64>,
    /// Stored rows waiting to be applied (held for a hole, or retrying).
    waiting: i64,
    /// A `seq resync` request not yet picked up by the daemon.
    resync_requested: bool,
}

type StatusTuple = (
    String,
    String,
    String,
    i64,
    i64,
    String,
    Option<i64>,
    i64,
    i64,
);

async fn status(args: StatusArgs, global: &Global) -> Result<ExitCode, CliError> {
    use eventyard_core::db::Db;
    use eventyard_core::with_pool;
    let db = Db::connect(global.require_database_url()?).await?;
    let mut sql = String::from(
        "SELECT s.subscriber, s.producer_id, s.stream, s.epoch, s.last_seq, s.mode, \
         (SELECT MAX(o.seq) FROM ey_outbox o WHERE o.producer_id = s.producer_id \
           AND o.stream = s.stream AND o.epoch = s.epoch) AS producer_seq, \
         (SELECT COUNT(*) FROM ey_inbox i WHERE i.subscriber = s.subscriber \
           AND i.producer_id = s.producer_id AND i.stream = s.stream \
           AND i.status IN ('received', 'retrying')) AS waiting, \
         (SELECT COUNT(*) FROM ey_seq_resync r WHERE r.subscriber = s.subscriber \
           AND r.producer_id = s.producer_id AND r.stream = s.stream) AS resync \
         FROM ey_stream_state s WHERE 1 = 1",
    );
    let mut n = 1;
    for (value, column) in [
        (&args.subscriber, "s.subscriber"),
        (&args.producer, "s.producer_id"),
        (&args.stream, "s.stream"),
    ] {
        if value.is_some() {
            sql.push_str(&format!(" AND {column} = ${n}"));
            n += 1;
        }
    }
    sql.push_str(" ORDER BY s.subscriber, s.producer_id, s.stream");
    let sql = db.sql(&sql).into_owned();
    let rows: Vec<StatusTuple> = with_pool!(&db, pool => {
        let mut q = sqlx::query_as::<_, StatusTuple>(&sql);
        for v in [&args.subscriber, &args.producer, &args.stream].into_iter().flatten() {
            q = q.bind(v);
        }
        q.fetch_all(pool).await.map_err(|e| CliError::Failed(format!("reading ey_stream_state: {e}")))?
    });
    let rows: Vec<StatusRow> = rows
        .into_iter()
        .map(
            |(subscriber, producer, stream, epoch, last, mode, producer_seq, waiting, resync)| {
                StatusRow {
                    subscriber,
                    producer,
                    stream,
                    epoch,
                    last,
                    mode,
                    lag: producer_seq.map(|p| (p - last).max(0)),
                    producer_seq,
                    waiting,
                    resync_requested: resync > 0,
                }
            },
        )
        .collect();
    if global.json {
        for r in &rows {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        }
    } else {
        let opt = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.subscriber.clone(),
                    r.producer.clone(),
                    r.stream.clone(),
                    r.epoch.to_string(),
                    r.last.to_string(),
                    r.mode.clone(),
                    opt(r.producer_seq),
                    opt(r.lag),
                    r.waiting.to_string(),
                    if r.resync_requested { "requested" } else { "" }.to_string(),
                ]
            })
            .collect();
        super::table::print(
            &[
                "SUBSCRIBER",
                "PRODUCER",
                "STREAM",
                "EPOCH",
                "LAST",
                "MODE",
                "PRODUCER_SEQ",
                "LAG",
                "WAITING",
                "RESYNC",
            ],
            &table,
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn resync(args: ResyncArgs, global: &Global) -> Result<ExitCode, CliError> {
    use eventyard_core::db::{Backend, Db};
    use eventyard_core::with_pool;
    let db = Db::connect(global.require_database_url()?).await?;
    let subscribers: Vec<String> = match &args.subscriber {
        Some(s) => vec![s.clone()],
        None => {
            let sql = db.sql(
                "SELECT subscriber FROM ey_stream_state WHERE producer_id = $1 AND stream = $2 \
                 ORDER BY subscriber",
            );
            with_pool!(&db, pool => sqlx::query_scalar(&sql).bind(&args.producer).bind(&args.stream)
                .fetch_all(pool).await
                .map_err(|e| CliError::Failed(format!("reading ey_stream_state: {e}")))?)
        }
    };
    if subscribers.is_empty() {
        return Err(CliError::Failed(format!(
            "no subscriber tracks producer `{}`, stream `{}` (no ey_stream_state row); pass --subscriber",
            args.producer, args.stream
        )));
    }
    let insert = match db.backend() {
        Backend::MySql => {
            "INSERT IGNORE INTO ey_seq_resync (subscriber, producer_id, stream, requested_at) \
             VALUES (?, ?, ?, ?)"
        }
        _ => {
            "INSERT INTO ey_seq_resync (subscriber, producer_id, stream, requested_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (subscriber, producer_id, stream) DO NOTHING"
        }
    };
    for s in &subscribers {
        with_pool!(&db, pool => {
            sqlx::query(insert).bind(s).bind(&args.producer).bind(&args.stream)
                .bind(chrono::Utc::now()).execute(pool).await
                .map_err(|e| CliError::Failed(format!("writing ey_seq_resync: {e}")))?;
        });
    }
    if global.json {
        println!(
            "{}",
            serde_json::json!({ "producer": args.producer, "stream": args.stream, "subscribers": subscribers })
        );
    } else {
        println!(
            "resync requested for producer `{}`, stream `{}` (subscribers: {}); the running daemon applies the stored snapshot within a second",
            args.producer,
            args.stream,
            subscribers.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn partitions(args: PartitionsArgs, global: &Global) -> Result<ExitCode, CliError> {
    use eventyard_core::db::Db;
    use eventyard_receiver::partition::{leases, members, INSPECTION_LEASE};
    let db = Db::connect(global.require_database_url()?).await?;
    let subscriber = args.subscriber.as_deref();
    let leases = leases(&db, subscriber)
        .await
        .map_err(|e| CliError::Failed(format!("reading ey_seq_partition_lease: {e}")))?;
    let members = members(&db, subscriber)
        .await
        .map_err(|e| CliError::Failed(format!("reading ey_seq_member: {e}")))?;
    let now = chrono::Utc::now();
    if global.json {
        for l in &leases {
            let live = l.owner.is_some() && l.expires_at.is_some_and(|t| t >= now);
            println!(
                "{}",
                serde_json::json!({
                    "subscriber": l.subscriber, "event_type": l.event_type,
                    "partition": (l.partition_no != INSPECTION_LEASE).then_some(l.partition_no),
                    "inspection": l.partition_no == INSPECTION_LEASE,
                    "owner": l.owner, "expires_at": l.expires_at, "held": live,
                })
            );
        }
        for m in &members {
            println!(
                "{}",
                serde_json::json!({
                    "subscriber": m.subscriber, "event_type": m.event_type,
                    "instance": m.instance_id, "expires_at": m.expires_at,
                    "live": m.expires_at >= now,
                })
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let table: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            let state = match (&l.owner, l.expires_at) {
                (Some(_), Some(t)) if t >= now => "held",
                (Some(_), _) => "expired",
                _ => "free",
            };
            vec![
                l.subscriber.clone(),
                l.event_type.clone(),
                if l.partition_no == INSPECTION_LEASE {
                    "inspection".to_string()
                } else {
                    l.partition_no.to_string()
                },
                l.owner.clone().unwrap_or_else(|| "-".into()),
                state.to_string(),
                l.expires_at.map_or_else(|| "-".into(), |t| t.to_rfc3339()),
            ]
        })
        .collect();
    super::table::print(
        &[
            "SUBSCRIBER",
            "EVENT_TYPE",
            "PARTITION",
            "OWNER",
            "STATE",
            "EXPIRES_AT",
        ],
        &table,
    );
    let table: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            vec![
                m.subscriber.clone(),
                m.event_type.clone(),
                m.instance_id.clone(),
                if m.expires_at >= now { "live" } else { "dead" }.to_string(),
                m.expires_at.to_rfc3339(),
            ]
        })
        .collect();
    println!();
    super::table::print(
        &[
            "SUBSCRIBER",
            "EVENT_TYPE",
            "INSTANCE",
            "STATE",
            "EXPIRES_AT",
        ],
        &table,
    );
    Ok(ExitCode::SUCCESS)
}
