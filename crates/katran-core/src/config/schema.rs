//! The file's vocabulary in one place: which tables and keys exist, an
//! example line for each (help texts quote them), the words people tend to
//! write instead, and every default and limit. `man/katran.toml.5` documents
//! exactly this; change both together.

/// One key of a table.
pub struct KeyDoc {
    pub name: &'static str,
    /// A correct line, quoted by help texts ("write it like ...").
    pub example: &'static str,
}

/// One kind of table in the file.
pub struct TableDoc {
    /// How messages name the table: `[dataplane]`, `[[vip]]`, `real`.
    pub title: &'static str,
    pub keys: &'static [KeyDoc],
    /// Words that mean a key of this table: (what people write, the key).
    pub aliases: &'static [(&'static str, &'static str)],
}

impl TableDoc {
    pub fn key(&self, name: &str) -> Option<&'static KeyDoc> {
        self.keys.iter().find(|k| k.name == name)
    }

    /// The example line of a key (empty for a key this table lacks, which
    /// would be a slip in this module, never something a user wrote).
    pub fn example(&self, name: &str) -> &'static str {
        self.key(name).map(|k| k.example).unwrap_or_default()
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        self.keys.iter().map(|k| k.name)
    }
}

const fn key(name: &'static str, example: &'static str) -> KeyDoc {
    KeyDoc { name, example }
}

pub static ROOT: TableDoc = TableDoc {
    title: "the top level",
    keys: &[
        key("dataplane", "[dataplane]"),
        key("vip", "[[vip]]"),
        key("server_id", "[[server_id]]"),
        key("healthcheck_mark", "[[healthcheck_mark]]"),
        key("udp_flow_migration", "[udp_flow_migration]"),
        key("announce", "[announce]"),
        key("metrics", "[metrics]"),
    ],
    aliases: &[
        ("vips", "vip"),
        ("service", "vip"),
        ("services", "vip"),
        ("server_ids", "server_id"),
        ("healthcheck_marks", "healthcheck_mark"),
        ("somark", "healthcheck_mark"),
        ("somarks", "healthcheck_mark"),
        ("global", "dataplane"),
        ("globals", "dataplane"),
        ("down_reals", "udp_flow_migration"),
        ("bgp", "announce"),
        ("announcements", "announce"),
        ("prometheus", "metrics"),
    ],
};

pub static DATAPLANE: TableDoc = TableDoc {
    title: "[dataplane]",
    keys: &[
        key("interfaces", "interfaces = [\"eth0\"]"),
        key("xdp_mode", "xdp_mode = \"auto\""),
        key("gateway_mac", "gateway_mac = \"auto\""),
        key("encap", "encap = \"ipip\""),
        key("gue_port", "gue_port = 9886"),
        key("gue_source_v4", "gue_source_v4 = \"10.0.13.37\""),
        key("gue_source_v6", "gue_source_v6 = \"fc00:13::37\""),
        key("ring", "ring = \"maglev-v2\""),
        key("ring_size", "ring_size = 65537"),
        key("max_vips", "max_vips = 256"),
        key("max_reals", "max_reals = 4096"),
        key("conn_table_size", "conn_table_size = 65536"),
        key("forwarding_cpus", "forwarding_cpus = [0, 1, 2, 3]"),
        key("conn_table", "conn_table = \"per-cpu\""),
        key("vip_real_counters", "vip_real_counters = true"),
        key(
            "outer_source_v4_prefix",
            "outer_source_v4_prefix = \"172.16.0.0\"",
        ),
        key(
            "outer_source_v6_prefix",
            "outer_source_v6_prefix = \"100::\"",
        ),
        key("tcp_server_id", "tcp_server_id = true"),
        key("max_conn_rate", "max_conn_rate = 125000"),
        key("udp_timeout", "udp_timeout = \"30s\""),
        key("max_frame_len", "max_frame_len = 1514"),
        key("pin_dir", "pin_dir = \"/sys/fs/bpf/katran\""),
    ],
    aliases: &[
        ("interface", "interfaces"),
        ("iface", "interfaces"),
        ("ifaces", "interfaces"),
        ("dev", "interfaces"),
        ("device", "interfaces"),
        ("devices", "interfaces"),
        ("mode", "xdp_mode"),
        ("gateway", "gateway_mac"),
        ("gw_mac", "gateway_mac"),
        ("default_mac", "gateway_mac"),
        ("mac", "gateway_mac"),
        ("encapsulation", "encap"),
        ("tunnel", "encap"),
        ("hash_ring", "ring"),
        ("maglev", "ring"),
        ("cpus", "forwarding_cpus"),
        ("lru_size", "conn_table_size"),
        ("conn_table", "conn_table_size"),
        ("udp_timeout_s", "udp_timeout"),
        ("mtu", "max_frame_len"),
        ("bpffs", "pin_dir"),
    ],
};

pub static VIP: TableDoc = TableDoc {
    title: "[[vip]]",
    keys: &[
        key("address", "address = \"10.0.0.1:80\""),
        key("proto", "proto = \"tcp\""),
        key("flags", "flags = [\"no-src-port\"]"),
        key(
            "reals",
            "reals = [{ address = \"10.1.0.1\", weight = 1 }, \"10.1.0.2\"]",
        ),
        key(
            "healthcheck",
            "healthcheck = { type = \"http\", path = \"/healthz\", interval = \"2s\" }",
        ),
    ],
    aliases: &[
        ("addr", "address"),
        ("ip", "address"),
        ("vip", "address"),
        ("protocol", "proto"),
        ("flag", "flags"),
        ("real", "reals"),
        ("backends", "reals"),
        ("servers", "reals"),
        ("hosts", "reals"),
        ("health_check", "healthcheck"),
        ("health", "healthcheck"),
        ("check", "healthcheck"),
    ],
};

pub static HEALTHCHECK: TableDoc = TableDoc {
    title: "healthcheck",
    keys: &[
        key("type", "type = \"http\""),
        key("port", "port = 8080"),
        key("path", "path = \"/healthz\""),
        key("expect", "expect = 200"),
        key("interval", "interval = \"2s\""),
        key("timeout", "timeout = \"1s\""),
        key("rise", "rise = 2"),
        key("fall", "fall = 3"),
    ],
    aliases: &[
        ("kind", "type"),
        ("probe", "type"),
        ("url", "path"),
        ("status", "expect"),
        ("every", "interval"),
    ],
};

pub static REAL: TableDoc = TableDoc {
    title: "real",
    keys: &[
        key("address", "{ address = \"10.1.0.1\", weight = 1 }"),
        key("weight", "{ address = \"10.1.0.1\", weight = 1 }"),
    ],
    aliases: &[("addr", "address"), ("ip", "address"), ("w", "weight")],
};

pub static SERVER_ID: TableDoc = TableDoc {
    title: "[[server_id]]",
    keys: &[key("id", "id = 1022"), key("real", "real = \"10.1.0.1\"")],
    aliases: &[
        ("server_id", "id"),
        ("address", "real"),
        ("addr", "real"),
        ("ip", "real"),
    ],
};

pub static HEALTHCHECK_MARK: TableDoc = TableDoc {
    title: "[[healthcheck_mark]]",
    keys: &[
        key("mark", "mark = 1000"),
        key("real", "real = \"10.1.0.1\""),
    ],
    aliases: &[
        ("somark", "mark"),
        ("so_mark", "mark"),
        ("address", "real"),
        ("addr", "real"),
        ("ip", "real"),
    ],
};

pub static UDP_FLOW_MIGRATION: TableDoc = TableDoc {
    title: "[udp_flow_migration]",
    keys: &[key("down_reals", "down_reals = [\"10.1.0.3\"]")],
    aliases: &[("down", "down_reals"), ("reals", "down_reals")],
};

pub static ANNOUNCE: TableDoc = TableDoc {
    title: "[announce]",
    keys: &[
        key("table", "table = 100"),
        key("withdraw_on_exit", "withdraw_on_exit = false"),
    ],
    aliases: &[
        ("route_table", "table"),
        ("routing_table", "table"),
        ("withdraw_on_shutdown", "withdraw_on_exit"),
    ],
};

pub static METRICS: TableDoc = TableDoc {
    title: "[metrics]",
    keys: &[key("address", "address = \"127.0.0.1:9870\"")],
    aliases: &[
        ("listen", "address"),
        ("listen_address", "address"),
        ("metrics_address", "address"),
        ("bind", "address"),
    ],
};

/// Every table, to tell a user that a misplaced key belongs elsewhere.
pub static TABLES: [&TableDoc; 8] = [
    &DATAPLANE,
    &VIP,
    &REAL,
    &SERVER_ID,
    &HEALTHCHECK_MARK,
    &UDP_FLOW_MIGRATION,
    &ANNOUNCE,
    &METRICS,
];

// ---- enumerations ---------------------------------------------------------

pub const XDP_MODES: &[&str] = &["native", "generic", "auto"];
pub const ENCAPS: &[&str] = &["ipip", "gue"];
pub const RINGS: &[&str] = &["maglev-v2", "maglev-v1"];
pub const PROTOS: &[&str] = &["tcp", "udp"];
pub const FLAGS: &[&str] = &[
    "no-src-port",
    "dport-hash",
    "no-conn-table",
    "quic",
    "udp-flow-migration",
];

// ---- defaults and limits --------------------------------------------------
// Defaults of the dataplane globals (max_conn_rate, udp_timeout,
// max_frame_len, outer source prefixes) are `model::Globals::default()`.

/// Maglev ring slots per VIP. Prime, as Maglev requires; 65537 is Katran's.
pub const DEFAULT_RING_SIZE: u32 = 65_537;
/// Smallest ring: anything smaller balances too coarsely to be useful.
pub const MIN_RING_SIZE: u32 = 17;
/// Largest ring (prime): 4 MB per ring, 8 MB per VIP with two generations.
pub const MAX_RING_SIZE: u32 = 1_000_003;

pub const DEFAULT_MAX_VIPS: u32 = 256;
pub const MAX_MAX_VIPS: u32 = 65_536;

pub const DEFAULT_MAX_REALS: u32 = 4_096;
pub const MAX_MAX_REALS: u32 = 1_048_576;

/// Connection-table entries per forwarding CPU (about 7 MiB each).
pub const DEFAULT_CONN_TABLE_SIZE: u32 = 65_536;
pub const MIN_CONN_TABLE_SIZE: u32 = 1_024;
pub const MAX_CONN_TABLE_SIZE: u32 = 67_108_864;

/// `conn_table` values.
pub const CONN_TABLES: &[&str] = &["per-cpu", "shared"];

/// Highest CPU number accepted in `forwarding_cpus` (Linux's NR_CPUS limit).
pub const MAX_CPU: u32 = 8_191;

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/katran";

/// Where `[metrics]` serves without an `address`: loopback only.
pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:9870";

pub const DEFAULT_GUE_PORT: u16 = 9_886;

/// TCP option kind of server ids when `tcp_server_id = true` (Katran's).
pub const DEFAULT_TCP_SERVER_ID_KIND: u8 = 183;

/// Weight of a real written as a bare address or without `weight`.
pub const DEFAULT_WEIGHT: u32 = 1;
pub const MAX_WEIGHT: u32 = 65_535;

pub const MIN_UDP_TIMEOUT_S: u64 = 1;
pub const MAX_UDP_TIMEOUT_S: u64 = 86_400;

/// Smallest non-zero `max_frame_len`: a minimal Ethernet frame without FCS.
pub const MIN_FRAME_LEN: i64 = 60;

/// Linux interface names are shorter than IFNAMSIZ (16).
pub const MAX_IFNAME_LEN: usize = 15;
