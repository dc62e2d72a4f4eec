//! peer: one actor per connection (in progress).
