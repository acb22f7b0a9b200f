//! Setup shared by every benchmark: service URLs (loopback only), a scratch
//! PostgreSQL database per run, broker topology that is removed at the end,
//! and the result tables.

use std::fmt::Write as _;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use eventyard_core::db::{Db, DbOptions};
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use sqlx::{ConnectOptions, Connection as _, Executor};

/// Any error of a benchmark run.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The result of a benchmark step.
pub(crate) type Result<T, E = BoxError> = std::result::Result<T, E>;

/// An error from a message.
pub(crate) fn fail(message: impl Into<String>) -> BoxError {
    message.into().into()
}

/// Where the services are (shared by every subcommand).
#[derive(Debug, Clone, Args)]
pub(crate) struct Services {
    /// PostgreSQL server URL; a fresh database `eyb_<uuid>` is created on
    /// this server for the run and dropped at the end.
    #[arg(
        long,
        env = "EVENTYARD_BENCH_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pub(crate) database_url: String,

    /// RabbitMQ URL.
    #[arg(
        long,
        env = "EVENTYARD_BENCH_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub(crate) amqp_url: String,

    /// Connections in each database pool (eventyard's and the naive loop's).
    #[arg(long, default_value_t = 16)]
    pub(crate) db_connections: u32,

    /// Upper bound on each timed phase; a phase that takes longer fails the run.
    #[arg(long, default_value_t = 600)]
    pub(crate) phase_timeout_secs: u64,
}

impl Services {
    /// Refuses anything but loopback hosts: a benchmark floods its broker and database.
    pub(crate) fn check_loopback(&self) -> Result<()> {
        let pg = sqlx::postgres::PgConnectOptions::from_str(&self.database_url)?;
        let pg_host = pg.get_host().to_owned();
        let amqp: lapin::uri::AMQPUri = self
            .amqp_url
            .parse()
            .map_err(|e: String| fail(format!("invalid AMQP URL: {e}")))?;
        for (what, host) in [("PostgreSQL", pg_host), ("RabbitMQ", amqp.authority.host)] {
            if !is_loopback(&host) {
                return Err(fail(format!(
                    "{what} host `{host}` is not a loopback address; the benchmark only runs against local services"
                )));
            }
        }
        Ok(())
    }

    /// Runs `phase`, failing it after the phase timeout.
    pub(crate) async fn bounded<T>(
        &self,
        what: &str,
        phase: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let limit = Duration::from_secs(self.phase_timeout_secs);
        match tokio::time::timeout(limit, phase).await {
            Ok(result) => result,
            Err(_) => Err(fail(format!("{what} did not finish within {limit:?}"))),
        }
    }

    /// Runs one timed phase: shows `heading` on stderr, runs `phase`
    /// [`bounded`](Self::bounded) as `what`, then shows its rate.
    pub(crate) async fn measure(
        &self,
        what: &str,
        heading: String,
        phase: impl Future<Output = Result<Measurement>>,
    ) -> Result<Measurement> {
        eprintln!("{heading}");
        let m = self.bounded(what, phase).await?;
        eprintln!("    {:.0}/s", m.rate());
        Ok(m)
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    // A Unix socket directory is local too.
    if host.starts_with('/') {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// A unique name for this run's broker objects: `eyb.<what>.<uuid>`.
pub(crate) fn unique(what: &str) -> String {
    format!("eyb.{what}.{}", uuid::Uuid::new_v4().simple())
}

/// An AMQP short string, or an error naming it.
pub(crate) fn short(value: &str) -> Result<ShortString> {
    ShortString::try_new(value).map_err(|e| fail(format!("`{value}`: {e}")))
}

/// A fresh PostgreSQL database for one run, dropped by [`ScratchDb::drop_database`].
#[derive(Debug)]
pub(crate) struct ScratchDb {
    /// eventyard's pool on it (migrated).
    pub(crate) db: Db,
    /// A plain sqlx pool on it, for the hand-written baselines and checks.
    pub(crate) pool: sqlx::PgPool,
    admin_url: String,
    name: String,
}

impl ScratchDb {
    /// Creates `eyb_<uuid>` on the server of `admin_url`, connects and applies
    /// eventyard's migrations.
    pub(crate) async fn create(services: &Services) -> Result<ScratchDb> {
        let admin_url = services.database_url.clone();
        let name = format!("eyb_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::postgres::PgConnectOptions::from_str(&admin_url)?
            .connect()
            .await
            .map_err(|e| fail(format!("PostgreSQL at {admin_url} does not answer: {e}")))?;
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await?;
        admin.close().await.ok();
        let scratch = ScratchDb::open(admin_url.clone(), name.clone(), services).await;
        match scratch {
            Ok(s) => Ok(s),
            Err(e) => {
                // Leave nothing behind when the setup fails half way.
                let _ = drop_database(&admin_url, &name).await;
                Err(e)
            }
        }
    }

    async fn open(admin_url: String, name: String, services: &Services) -> Result<ScratchDb> {
        let url = replace_db_name(&admin_url, &name)?;
        let db = Db::connect_with(
            &url,
            &DbOptions::default().max_connections(services.db_connections),
        )
        .await?;
        db.migrate().await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(services.db_connections)
            .connect(&url)
            .await?;
        Ok(ScratchDb {
            db,
            pool,
            admin_url,
            name,
        })
    }

    /// The database's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Closes the pools and drops the database.
    pub(crate) async fn drop_database(self) -> Result<()> {
        self.pool.close().await;
        self.db.close().await;
        drop_database(&self.admin_url, &self.name).await
    }
}

async fn drop_database(admin_url: &str, name: &str) -> Result<()> {
    let mut admin = sqlx::postgres::PgConnection::connect(admin_url).await?;
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await?;
    admin.close().await.ok();
    Ok(())
}

fn replace_db_name(admin_url: &str, name: &str) -> Result<String> {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let cut = base[scheme_end..]
        .rfind('/')
        .map(|i| i + scheme_end)
        .ok_or_else(|| fail("the PostgreSQL URL needs a database path (…/test)"))?;
    let mut url = format!("{}/{}", &base[..cut], name);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Ok(url)
}

/// A lapin connection to the broker that remembers the exchanges and queues
/// it declared, so the run can remove them at the end.
#[derive(Debug)]
pub(crate) struct Broker {
    url: String,
    connection: Connection,
    exchanges: Vec<String>,
    queues: Vec<String>,
}

impl Broker {
    /// Connects to `url`.
    pub(crate) async fn connect(url: &str) -> Result<Broker> {
        let connection = Connection::connect(
            url,
            ConnectionProperties::default().with_connection_name("eventyard-bench".into()),
        )
        .await
        .map_err(|e| fail(format!("RabbitMQ does not answer: {e}")))?;
        Ok(Broker {
            url: url.to_owned(),
            connection,
            exchanges: Vec::new(),
            queues: Vec::new(),
        })
    }

    /// A new channel with publisher confirms on.
    pub(crate) async fn confirm_channel(&self) -> Result<Channel> {
        let channel = self.connection.create_channel().await?;
        channel
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await?;
        Ok(channel)
    }

    /// A new channel without confirms (for consumers).
    pub(crate) async fn channel(&self) -> Result<Channel> {
        Ok(self.connection.create_channel().await?)
    }

    /// Takes broker objects declared by someone else (eventyard's transport)
    /// into this run's cleanup.
    pub(crate) fn adopt(&mut self, exchanges: &[String], queues: &[String]) {
        self.exchanges.extend(exchanges.iter().cloned());
        self.queues.extend(queues.iter().cloned());
    }

    /// Declares a durable topic exchange (as eventyard does) and a durable
    /// classic queue bound to it with `#`; both are removed by [`cleanup`](Self::cleanup).
    pub(crate) async fn exchange_and_queue(&mut self, exchange: &str, queue: &str) -> Result<()> {
        let channel = self.connection.create_channel().await?;
        channel
            .exchange_declare(
                short(exchange)?,
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        self.exchanges.push(exchange.to_owned());
        let mut args = FieldTable::default();
        args.insert(
            short("x-queue-type")?,
            AMQPValue::LongString(LongString::from("classic".as_bytes())),
        );
        channel
            .queue_declare(short(queue)?, QueueDeclareOptions::durable(), args)
            .await?;
        self.queues.push(queue.to_owned());
        channel
            .queue_bind(
                short(queue)?,
                short(exchange)?,
                short("#")?,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let _ = channel.close(200, short("done")?).await;
        Ok(())
    }

    /// The number of ready messages in `queue`.
    pub(crate) async fn message_count(&self, queue: &str) -> Result<u32> {
        let channel = self.connection.create_channel().await?;
        let q = channel
            .queue_declare(
                short(queue)?,
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let _ = channel.close(200, short("done")?).await;
        Ok(q.message_count())
    }

    /// Deletes `queue` now (frees the broker's memory between phases).
    pub(crate) async fn delete_queue(&mut self, queue: &str) -> Result<()> {
        let channel = self.connection.create_channel().await?;
        channel
            .queue_delete(short(queue)?, QueueDeleteOptions::default())
            .await?;
        let _ = channel.close(200, short("done")?).await;
        self.queues.retain(|q| q != queue);
        Ok(())
    }

    /// Deletes every queue and exchange this run declared and closes the
    /// connection. If the connection was lost (a broker restart), it
    /// reconnects once for the cleanup.
    pub(crate) async fn cleanup(mut self) -> Result<()> {
        if !self.connection.status().connected() {
            let fresh = Broker::connect(&self.url).await?;
            self.connection = fresh.connection;
        }
        let channel = self.connection.create_channel().await?;
        let mut first_error: Option<BoxError> = None;
        for queue in std::mem::take(&mut self.queues) {
            if let Err(e) = channel
                .queue_delete(short(&queue)?, QueueDeleteOptions::default())
                .await
            {
                first_error.get_or_insert(fail(format!("deleting queue {queue}: {e}")));
            }
        }
        for exchange in std::mem::take(&mut self.exchanges) {
            if let Err(e) = channel
                .exchange_delete(short(&exchange)?, ExchangeDeleteOptions::default())
                .await
            {
                first_error.get_or_insert(fail(format!("deleting exchange {exchange}: {e}")));
            }
        }
        let _ = self.connection.close(200, short("done")?).await;
        first_error.map_or(Ok(()), Err)
    }
}

/// One measured line of a result table.
#[derive(Debug, Clone)]
pub(crate) struct Measurement {
    /// Short key used in the ratios (`a`, `a'`, `b`, `c`).
    pub(crate) key: &'static str,
    /// What was measured.
    pub(crate) label: String,
    /// Events handled.
    pub(crate) events: u64,
    /// Wall time of the timed part.
    pub(crate) elapsed: Duration,
    /// The correctness check after the run, in words.
    pub(crate) check: String,
    /// Whether the check passed.
    pub(crate) ok: bool,
}

impl Measurement {
    /// Events per second.
    pub(crate) fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.events as f64 / secs
        } else {
            0.0
        }
    }
}

/// A ratio between two measurements, with an optional target.
#[derive(Debug, Clone)]
pub(crate) struct Ratio {
    /// `b/a'` etc.
    pub(crate) name: &'static str,
    /// The value.
    pub(crate) value: f64,
    /// The minimum it should reach, if there is a target.
    pub(crate) target: Option<f64>,
}

/// Refuses a `--skip` entry that is not one of `phases`.
pub(crate) fn check_skip(skip: &[String], phases: &[&str]) -> Result<()> {
    match skip.iter().find(|s| !phases.contains(&s.as_str())) {
        Some(bad) => Err(fail(format!(
            "--skip: unknown phase `{bad}` (phases: {})",
            phases.join(", ")
        ))),
        None => Ok(()),
    }
}

/// Whether `phase` runs: `--skip` does not name it.
pub(crate) fn runs(skip: &[String], phase: &str) -> bool {
    !skip.iter().any(|s| s == phase)
}

/// The ratios `(name, numerator key, denominator key, target)` whose two
/// measurements were both taken (a skipped phase leaves its ratios out).
pub(crate) fn ratios(
    measurements: &[Measurement],
    wanted: &[(&'static str, &str, &str, Option<f64>)],
) -> Vec<Ratio> {
    let rate = |key: &str| {
        measurements
            .iter()
            .find(|m| m.key == key)
            .map(Measurement::rate)
            .filter(|r| *r > 0.0)
    };
    wanted
        .iter()
        .filter_map(|&(name, x, y, target)| {
            Some(Ratio {
                name,
                value: rate(x)? / rate(y)?,
                target,
            })
        })
        .collect()
}

/// Renders measurements and ratios as Markdown tables.
pub(crate) fn render_tables(measurements: &[Measurement], ratios: &[Ratio]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| run | events | seconds | events/s | check |");
    let _ = writeln!(out, "|---|---:|---:|---:|---|");
    for m in measurements {
        let _ = writeln!(
            out,
            "| ({}) {} | {} | {:.2} | **{}** | {} {} |",
            m.key,
            m.label,
            thousands(m.events),
            m.elapsed.as_secs_f64(),
            thousands(m.rate().round() as u64),
            if m.ok { "ok:" } else { "FAILED:" },
            m.check
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "| ratio | value | target | met |");
    let _ = writeln!(out, "|---|---:|---|---|");
    for r in ratios {
        let (target, met) = match r.target {
            Some(t) => (
                format!("≥ {t:.1}"),
                if r.value >= t { "yes" } else { "**no**" },
            ),
            None => ("—".to_owned(), "—"),
        };
        let _ = writeln!(out, "| {} | {:.2} | {target} | {met} |", r.name, r.value);
    }
    out
}

/// `12345` as `12,345`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
