//! The built-in handlers: `log` and `sql`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use super::sql::{SqlTemplate, SqlTemplateError};
use super::{Handler, HandlerContext, HandlerOutcome, Message};

/// `log`: writes one structured `tracing` line per event (target
/// `eventyard::handler`, level INFO) with the event id, type, business key
/// and the converted fields as JSON, and completes it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogHandler;

#[async_trait]
impl Handler for LogHandler {
    async fn handle(&self, msg: &Message, _ctx: &mut HandlerContext<'_>) -> HandlerOutcome {
        let fields = serde_json::to_string(&msg.fields).unwrap_or_default();
        tracing::info!(
            target: "eventyard::handler",
            event_id = %msg.event_id,
            event_type = %msg.event_type,
            business_key = msg.common.business_key.as_deref().unwrap_or(""),
            attempt = msg.attempt,
            fields = %fields,
            "event received"
        );
        HandlerOutcome::done("logged")
    }

    /// It only logs.
    fn uses_transaction(&self) -> bool {
        false
    }
}

/// `sql`: runs the statement(s) in the row's `handler_config` inside the
/// handler transaction, with `:name` parameters bound to the converted
/// fields (never interpolated).
///
/// A parameter resolves to the field of that name, else to the one field
/// whose path ends in `/name` (fields of the `xml` converter without rules
/// are named by path, e.g. `order/customer/name`); if there is none, to
/// one of `event_id`, `event_type`, `publisher`, `producer_id`,
/// `business_key`, `trace_id`, `created_at` (RFC 3339) or `attempt`. A list
/// or record field binds as its JSON text; an absent optional value binds
/// NULL. A parameter that resolves to nothing fails the event (`dead`),
/// naming the parameter. Every value binds as text: on PostgreSQL, cast for
/// non-text columns (`:amount::numeric`).
#[derive(Debug, Default)]
pub struct SqlHandler {
    parsed: Mutex<HashMap<String, Arc<Result<SqlTemplate, SqlTemplateError>>>>,
}

impl SqlHandler {
    /// A `sql` handler (parsed statements are cached by text).
    pub fn new() -> Self {
        Self::default()
    }

    fn template(
        &self,
        text: &str,
        backend: eventyard_core::db::Backend,
    ) -> Arc<Result<SqlTemplate, SqlTemplateError>> {
        let key = format!("{}\u{0}{text}", backend.as_str());
        let mut cache = self.parsed.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() > 256 {
            cache.clear();
        }
        Arc::clone(
            cache
                .entry(key)
                .or_insert_with(|| Arc::new(SqlTemplate::parse(text, backend))),
        )
    }
}

/// The value a `:name` parameter binds: `Ok(None)` is NULL, `Err` is unknown.
fn resolve(msg: &Message, name: &str) -> Result<Option<String>, ()> {
    let text = |v: &eventyard_converter::FieldValue| match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_json().to_string(),
    };
    if let Some(v) = msg.fields.get(name) {
        return Ok(Some(text(v)));
    }
    // A path-named field (`order/customer/name`, from `xml` without rules)
    // answers to its last step when that is unambiguous.
    let suffix = format!("/{name}");
    let mut by_suffix = msg.fields.iter().filter(|(n, _)| n.ends_with(&suffix));
    if let (Some((_, v)), None) = (by_suffix.next(), by_suffix.next()) {
        return Ok(Some(text(v)));
    }
    let h = &msg.header;
    Ok(match name {
        "event_id" => Some(msg.event_id.clone()),
        "event_type" => Some(msg.event_type.clone()),
        "publisher" => Some(h.publisher.clone()),
        "producer_id" => h.producer_id.clone(),
        "business_key" => msg.common.business_key.clone(),
        "trace_id" => msg.common.trace_id.clone(),
        "created_at" => Some(h.created_at_rfc3339()),
        "attempt" => Some(msg.attempt.to_string()),
        _ => return Err(()),
    })
}

#[async_trait]
impl Handler for SqlHandler {
    async fn handle(&self, msg: &Message, ctx: &mut HandlerContext<'_>) -> HandlerOutcome {
        let Some(text) = ctx.handler_config().filter(|t| !t.trim().is_empty()) else {
            return HandlerOutcome::fail(format!(
                "the sql handler needs a statement in ey_receive_config.handler_config \
                 (event type `{}`)",
                msg.event_type
            ));
        };
        let template = self.template(text, ctx.backend());
        let template = match template.as_ref() {
            Ok(t) => t,
            Err(e) => return HandlerOutcome::fail(e.to_string()),
        };
        let mut affected = 0;
        for statement in &template.statements {
            let mut args = Vec::with_capacity(statement.params.len());
            for p in &statement.params {
                match resolve(msg, p) {
                    Ok(v) => args.push(v),
                    Err(()) => {
                        return HandlerOutcome::fail(format!(
                            "sql handler: parameter `:{p}` matches no field of the event \
                             (fields: {})",
                            msg.fields.names().collect::<Vec<_>>().join(", ")
                        ))
                    }
                }
            }
            match ctx.execute_opt(&statement.sql, &args).await {
                Ok(n) => affected += n,
                Err(e) => return HandlerOutcome::retry(format!("sql handler: {e}")),
            }
        }
        HandlerOutcome::done(format!("{affected} row(s) affected"))
    }
}
