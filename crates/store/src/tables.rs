//! The redb tables of the store and the layout of their keys. Values are BCS-encoded
//! versioned records (see [`codec`](crate::codec)); keys are fixed byte layouts so that
//! their order is stable.
//!
//! | table | key | value |
//! |-------|-----|-------|
//! | `meta` | name (`schema_version`, `next_component_id`, `component_bytes`, `block_bytes`) | `u64` |
//! | `peers` | network tag (1 byte) ‖ PeerId (32 bytes) | `PeerRecord` |
//! | `ip_bans` | address (4 or 16 bytes) ‖ prefix length (1 byte) | `IpBan` |
//! | `components` | component id (`u64`) | `ComponentRecord` |
//! | `component_index` (multimap) | PeerId (32 bytes) | component ids |
//! | `blocks` | height (`u64`) | the block, opaque bytes |

use redb::{MultimapTableDefinition, TableDefinition};

/// Small named counters: the schema version and the next component id.
pub(crate) const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
/// Key of the schema version in [`META`].
pub(crate) const SCHEMA_VERSION_KEY: &str = "schema_version";
/// Key of the next routing component id in [`META`].
pub(crate) const NEXT_COMPONENT_ID_KEY: &str = "next_component_id";
/// Key of the encoded bytes of all components in [`META`] (what their byte bound counts).
pub(crate) const COMPONENT_BYTES_KEY: &str = "component_bytes";

/// Peers, keyed by [`PeerKey::to_bytes`](crate::PeerKey::to_bytes).
pub(crate) const PEERS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("peers");

/// Banned IP addresses and prefixes, keyed by [`IpBanKey::to_bytes`](crate::IpBanKey::to_bytes).
pub(crate) const IP_BANS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("ip_bans");

/// Routing components by id.
pub(crate) const COMPONENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("components");

/// From a PeerId to the ids of the components that mention it.
pub(crate) const COMPONENT_INDEX: MultimapTableDefinition<'_, &[u8], u64> =
    MultimapTableDefinition::new("component_index");

/// Key of the bytes of all archived blocks in [`META`] (what their byte bound counts).
pub(crate) const BLOCK_BYTES_KEY: &str = "block_bytes";

/// Archived blocks by height ([`BlockTable`](crate::BlockTable)).
pub(crate) const BLOCKS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("blocks");
