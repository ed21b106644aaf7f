//! The audit trail's writer: events are queued (bounded) and written in batches by one
//! background task, off the request path. A full queue drops the event and counts it in a
//! metric instead of blocking the request that caused it.
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::NotSet, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, Set,
};
use tokio::sync::{mpsc, oneshot};

use crate::{metrics::Metrics, store::audit};

/// Most events written in one statement.
const BATCH: usize = 500;

enum Command {
    Write(Box<audit::ActiveModel>),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Command>,
    metrics: Arc<Metrics>,
}

/// One event as the trail stores it.
pub struct Record {
    pub at: DateTime<Utc>,
    pub event: &'static str,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub credential: Option<String>,
    pub detail: serde_json::Value,
}

impl AuditSink {
    /// Starts the writer task on the current runtime.
    pub fn spawn(db: DatabaseConnection, metrics: Arc<Metrics>, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity);
        tokio::spawn(writer(db, Arc::clone(&metrics), rx));
        Self { tx, metrics }
    }

    pub fn record(&self, r: Record) {
        let row = audit::ActiveModel {
            id: NotSet,
            at: Set(r.at),
            event: Set(r.event.to_owned()),
            user_id: Set(r.user_id),
            username: Set(r.username.map(|u| u.chars().take(150).collect())),
            ip: Set(r.ip),
            user_agent: Set(r.user_agent.map(|u| u.chars().take(512).collect())),
            credential: Set(r.credential.map(|c| c.chars().take(64).collect())),
            detail: Set(r.detail.to_string()),
        };
        if self.tx.try_send(Command::Write(Box::new(row))).is_err() {
            self.metrics.audit_dropped.inc();
        }
    }

    /// Waits until every event recorded before this call is written (or dropped).
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Command::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

async fn writer(db: DatabaseConnection, metrics: Arc<Metrics>, mut rx: mpsc::Receiver<Command>) {
    while let Some(first) = rx.recv().await {
        let mut rows = Vec::new();
        let mut acks = Vec::new();
        let mut next = Some(first);
        while let Some(command) = next {
            match command {
                Command::Write(row) => rows.push(*row),
                Command::Flush(ack) => acks.push(ack),
            }
            next = if rows.len() < BATCH { rx.try_recv().ok() } else { None };
        }
        let count = rows.len() as u64;
        if !rows.is_empty() {
            match audit::Entity::insert_many(rows).exec_without_returning(&db).await {
                Ok(_) => {
                    metrics.audit_written.inc_by(count);
                }
                Err(e) => {
                    metrics.audit_dropped.inc_by(count);
                    tracing::warn!(error = %e, events = count, "could not write audit events");
                }
            }
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

/// Deletes events older than `days` (`portcullis clearaudit`); returns how many.
pub async fn purge(db: &impl ConnectionTrait, days: u32) -> Result<u64, DbErr> {
    let cutoff = Utc::now() - chrono::Duration::days(i64::from(days));
    Ok(audit::Entity::delete_many().filter(audit::Column::At.lt(cutoff)).exec(db).await?.rows_affected)
}
