//! Tuning knobs of the AMQP transport.

use std::time::Duration;

/// Options of [`AmqpTransport`](super::AmqpTransport), built with `self`-taking
/// setters:
///
/// ```
/// use std::time::Duration;
/// use eventyard_transport::AmqpOptions;
///
/// let options = AmqpOptions::new()
///     .confirm_timeout(Duration::from_secs(5))
///     .connection_name("orders-daemon");
/// assert_eq!(options.get_confirm_timeout(), Duration::from_secs(5));
/// ```
#[derive(Clone, Debug)]
pub struct AmqpOptions {
    pub(crate) confirm_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) connect_wait: Duration,
    pub(crate) reconnect_backoff_min: Duration,
    pub(crate) reconnect_backoff_max: Duration,
    pub(crate) connection_name: String,
    pub(crate) publish_channels: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) tls_ca_pem: Option<String>,
    pub(crate) tls_client_pkcs12: Option<(Vec<u8>, String)>,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        Self {
            confirm_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            connect_wait: Duration::from_secs(5),
            reconnect_backoff_min: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(10),
            connection_name: "eventyard".to_owned(),
            publish_channels: 2,
            max_in_flight: 1000,
            tls_ca_pem: None,
            tls_client_pkcs12: None,
        }
    }
}

impl AmqpOptions {
    /// The defaults (see each setter).
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a publish waits for the broker's confirm before it counts as
    /// not sent ([`TransportError::ConfirmTimeout`](crate::TransportError::ConfirmTimeout)).
    /// Default: 10 s. For a batch, the clock starts when the batch's last
    /// message has been written.
    pub fn confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout;
        self
    }

    /// How long one connection attempt (TCP, TLS and AMQP handshake) may take.
    /// Default: 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a publish or declare made while the broker is unreachable
    /// waits for the reconnect before failing with
    /// [`TransportError::Disconnected`](crate::TransportError::Disconnected).
    /// Default: 5 s. Consumers wait indefinitely.
    pub fn connect_wait(mut self, wait: Duration) -> Self {
        self.connect_wait = wait;
        self
    }

    /// The reconnect backoff: the first retry comes at once, then the delay
    /// doubles from `min` up to `max`, each delay jittered to between half and
    /// all of it. Default: 100 ms to 10 s.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_backoff_min = min;
        self.reconnect_backoff_max = max.max(min);
        self
    }

    /// The connection name shown in the RabbitMQ management UI. Default: `eventyard`.
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = name.into();
        self
    }

    /// How many channels publish in parallel (each confirms its own batches).
    /// Default: 2; at least 1. Order is kept within one `publish_many` call
    /// and between calls that wait for each other, not between concurrent calls.
    pub fn publish_channels(mut self, channels: usize) -> Self {
        self.publish_channels = channels.max(1);
        self
    }

    /// How many messages one publishing channel has in flight (published, not
    /// yet confirmed) at most; concurrent `publish` calls are grouped into
    /// batches of up to this size. Default: 1000; at least 1.
    pub fn max_in_flight(mut self, messages: usize) -> Self {
        self.max_in_flight = messages.max(1);
        self
    }

    /// Extra CA certificates (PEM) to trust for `amqps://`, e.g. a private CA.
    /// The system's trust store is always used too. Default: none.
    pub fn tls_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.tls_ca_pem = Some(pem.into());
        self
    }

    /// A client certificate and key as PKCS#12 (DER) with its password, for
    /// brokers that authenticate clients by certificate. Default: none.
    pub fn tls_client_pkcs12(mut self, der: Vec<u8>, password: impl Into<String>) -> Self {
        self.tls_client_pkcs12 = Some((der, password.into()));
        self
    }

    /// The confirm timeout.
    pub fn get_confirm_timeout(&self) -> Duration {
        self.confirm_timeout
    }

    /// How long a publish waits for a connection.
    pub fn get_connect_wait(&self) -> Duration {
        self.connect_wait
    }

    /// The reconnect backoff bounds `(min, max)`.
    pub fn get_reconnect_backoff(&self) -> (Duration, Duration) {
        (self.reconnect_backoff_min, self.reconnect_backoff_max)
    }

    /// The number of publishing channels.
    pub fn get_publish_channels(&self) -> usize {
        self.publish_channels
    }

    /// The in-flight bound per publishing channel.
    pub fn get_max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// The delay before reconnect attempt `attempt` (0 = the first retry).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let exp = self
            .reconnect_backoff_min
            .saturating_mul(1u32 << (attempt - 1).min(20));
        let capped = exp.min(self.reconnect_backoff_max);
        // Equal jitter: between half and all of the delay, so that many
        // clients cut off together do not come back together.
        let half = capped / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let o = AmqpOptions::new()
            .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(o.backoff(0), Duration::ZERO);
        for attempt in 1..40 {
            let d = o.backoff(attempt);
            let nominal = Duration::from_millis(100)
                .saturating_mul(1 << (attempt - 1).min(20))
                .min(Duration::from_secs(2));
            assert!(d >= nominal / 2 && d <= nominal, "{attempt}: {d:?}");
        }
    }
}
