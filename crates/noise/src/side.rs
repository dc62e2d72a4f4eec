//! [`Side`]: which end of a handshake, for errors, logs and the `side` metric label.

netcore::metric_label_enum! {
    /// Which end of a handshake: the initiator dials, the responder accepts. Its name is also
    /// the `side` metric label.
    pub enum Side {
        /// The dialer, which sends message 1.
        Initiator => "initiator",
        /// The listener, which answers with message 2.
        Responder => "responder",
    }
}
