//! MQTT end to end on the namespace testbed (see `testbed/mod.rs`): a
//! mosquitto broker in every real behind the VIP 10.200.0.10:1883, and
//! long-lived MQTT sessions from a client through the XDP balancer (the
//! in-process one, programmed with `Testbed::apply`). What is tested is the
//! dataplane's stickiness: sessions stay on their broker while the VIP's
//! reals are added, reweighted and drained, and only a removed real's
//! sessions break. Which broker holds a session is read from the reals'
//! socket tables.
//!
//! Sessions use fixed source ports, so which real each one hashes to is the
//! same on every run. The balancer runs as a generic XDP program steered to
//! one CPU ([`Testbed::steer_balancer_to_cpu`]), as a NIC's receive hashing
//! keeps a flow on one CPU: its connection tables are per CPU, and a flow
//! whose packet reaches a CPU without its entry is hashed on the current
//! ring (on a veth, native XDP runs on whichever CPU started the queue's
//! poll). The selection logic is the same program in either mode.
//! Needs root, mosquitto (Debian `mosquitto`), `ss`, `ip` and `ethtool`;
//! prints `skipped: ...` otherwise.

use crate::common;
use crate::testbed;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Instant;

use katran::config::XdpMode;
use katran::kernel::bpf::abi::types::lb_stat;
use katran::model::{Backend, Proto, RingKind, State, Vip, VipFlags, VipKey};
use testbed::mqtt::{self, Session};
use testbed::{ip, Testbed, VIP4};

/// Root and the tools the scenarios run; prints why not otherwise.
fn can_run(name: &str) -> bool {
    let name = format!("e2e mqtt {name}");
    if !common::privileged(&name) {
        return false;
    }
    for (tool, arg) in [("ip", "-V"), ("ethtool", "--version"), ("ss", "-V")] {
        let found = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            common::skip(&name, &format!("needs {tool}"));
            return false;
        }
    }
    if mqtt::find_program("mosquitto").is_none() {
        common::skip(&name, "needs mosquitto (apt-get install mosquitto)");
        return false;
    }
    true
}

/// The MQTT VIP with `(real index, weight)` pairs.
fn mqtt_vip(tb: &Testbed, reals: &[(usize, u32)]) -> State {
    let mut s = tb.state();
    s.ring = RingKind::MaglevV2;
    s.vips.push(Vip {
        key: VipKey {
            addr: ip(VIP4),
            port: mqtt::PORT,
            proto: Proto::Tcp,
        },
        flags: VipFlags::default(),
        reals: reals
            .iter()
            .map(|&(i, weight)| Backend {
                addr: IpAddr::V4(tb.reals[i].v4),
                weight,
            })
            .collect(),
    });
    s
}

/// A testbed of `reals` reals, each running a broker, the balancer steered
/// to one CPU (see [`Testbed::steer_balancer_to_cpu`]) and programmed with
/// the MQTT VIP on reals 0, 1 and 2, equal weights.
fn mqtt_testbed(reals: usize) -> (Testbed, mqtt::Brokers) {
    let mut tb = Testbed::builder()
        .reals(reals)
        .mode(XdpMode::Generic)
        .build()
        .expect("testbed");
    tb.steer_balancer_to_cpu(0).expect("steering");
    tb.apply(&mqtt_vip(&tb, &[(0, 1), (1, 1), (2, 1)]))
        .expect("apply");
    let brokers = mqtt::serve(&mut tb).expect("brokers");
    (tb, brokers)
}

/// The real of each session, in session order; fails if one is on none.
fn placement(tb: &Testbed, sessions: &[Session]) -> Vec<usize> {
    let by_port = mqtt::sessions_by_real(tb).expect("reading the reals' sockets");
    sessions
        .iter()
        .map(|s| {
            *by_port
                .get(&s.port)
                .unwrap_or_else(|| panic!("{} (port {}) is on no real", s.id, s.port))
        })
        .collect()
}

/// Sessions per real name.
fn spread(on: &[usize]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for &r in on {
        *m.entry(format!("real{r}")).or_default() += 1;
    }
    m
}

/// The balancer's counters that tell a connection-table miss, per CPU.
fn table_counters(tb: &Testbed) -> String {
    let maps = tb.dataplane().maps().expect("balancer maps");
    [
        ("XDP_TX", lb_stat::STAT_XDP_TX),
        ("CONN_HIT", lb_stat::STAT_CONN_HIT),
        ("MISS_TCP_SYN", lb_stat::STAT_CONN_MISS_TCP_SYN),
        ("MISS_TCP_NONSYN", lb_stat::STAT_CONN_MISS_TCP_NONSYN),
        ("FALLBACK_TABLE", lb_stat::STAT_FALLBACK_TABLE),
        ("EVICTED", lb_stat::STAT_CONN_EVICTED),
        ("RATE_LIMITED", lb_stat::STAT_CONN_RATE_LIMITED),
    ]
    .iter()
    .map(|(name, stat)| {
        let per_cpu: Vec<u64> = katran::views::stats::global_per_cpu(&maps.stats)
            .expect("reading stats")
            .iter()
            .map(|row| row[stat.0 as usize])
            .collect();
        format!("{name} {per_cpu:?}")
    })
    .collect::<Vec<_>>()
    .join(", ")
}

/// One round trip on every session; the ids and errors of those that failed.
fn echo_all(sessions: &mut [Session], payload: &str) -> Vec<(String, anyhow::Error)> {
    sessions
        .iter_mut()
        .filter_map(|s| s.echo(payload.as_bytes()).err().map(|e| (s.id.clone(), e)))
        .collect()
}

#[test]
fn e2e_mqtt_sessions_publish_and_subscribe_through_the_vip() {
    if !can_run("publish and subscribe") {
        return;
    }
    let t0 = Instant::now();
    let (tb, _brokers) = mqtt_testbed(3);
    let client = tb.clients[0].ns.clone();
    let resets0 = mqtt::estab_resets(&tb, &client).expect("snmp");

    const CLIENTS: usize = 30;
    const MESSAGES: usize = 20;
    let mut sessions = mqtt::connect_many(&tb, 0, ip(VIP4), 30000, CLIENTS, "c").expect("sessions");
    let on = placement(&tb, &sessions);
    println!("e2e mqtt: {CLIENTS} sessions per broker {:?}", spread(&on));
    for r in 0..3 {
        assert!(
            on.contains(&r),
            "no session landed on real{r}: {:?}",
            spread(&on)
        );
    }

    // Each session publishes to its own topic and gets every message back,
    // in order, over the same connection, whichever broker it is on.
    for s in &mut sessions {
        let topic = s.topic();
        for m in 0..MESSAGES {
            s.publish(&topic, format!("{} #{m}", s.id).as_bytes())
                .expect("publish");
        }
        for m in 0..MESSAGES {
            let got = s.next_message().expect("message");
            assert_eq!(got.topic, topic);
            assert_eq!(
                got.payload,
                format!("{} #{m}", s.id).as_bytes(),
                "{}: message {m} of {MESSAGES}",
                s.id
            );
        }
    }

    // A shared topic: the brokers are independent, so a message published
    // through the VIP reaches exactly the sessions on the publisher's broker.
    for s in &mut sessions {
        s.subscribe("all").expect("subscribe all");
    }
    for r in 0..3 {
        let first = on.iter().position(|&x| x == r).expect("a session on it");
        sessions[first]
            .publish("all", format!("from real{r}").as_bytes())
            .expect("publish all");
    }
    for (s, &r) in sessions.iter_mut().zip(&on) {
        let got = s.next_message().expect("broadcast");
        assert_eq!(
            (got.topic.as_str(), got.payload),
            ("all", format!("from real{r}").into_bytes()),
            "{} is on real{r}",
            s.id
        );
        // Nothing else is queued: no message of another broker.
        s.echo(b"marker").expect("marker");
    }
    let resets = mqtt::estab_resets(&tb, &client).expect("snmp") - resets0;
    println!(
        "e2e mqtt: {} messages round trip, 3 broadcasts, {resets} resets, {:?} in all",
        CLIENTS * (MESSAGES + 1),
        t0.elapsed()
    );
    assert_eq!(resets, 0, "connections were reset");
}

#[test]
fn e2e_mqtt_sessions_survive_reloads_that_add_reweight_and_drain() {
    if !can_run("reload under load") {
        return;
    }
    let t0 = Instant::now();
    let (tb, _brokers) = mqtt_testbed(5);
    let client = tb.clients[0].ns.clone();

    const SESSIONS: usize = 100;
    let mut sessions =
        mqtt::connect_many(&tb, 0, ip(VIP4), 30000, SESSIONS, "s").expect("sessions");
    let failed = echo_all(&mut sessions, "before");
    assert!(failed.is_empty(), "before any reload: {failed:?}");
    let on = placement(&tb, &sessions);
    println!(
        "e2e mqtt reload: {SESSIONS} sessions per broker {:?}",
        spread(&on)
    );
    let resets0 = mqtt::estab_resets(&tb, &client).expect("snmp");

    // Every apply adds a real, reweights one and drains one (the real the
    // previous variant added leaves: no session was opened while it was in).
    let a = [(0, 0), (1, 1), (2, 2), (3, 1)]; // + real3, real2 x2, real0 drained
    let b = [(0, 1), (1, 2), (2, 0), (4, 1)]; // + real4, real1 x2, real2 drained
    let mut applied = Vec::new();
    for k in 1..=10 {
        let variant = if k % 2 == 1 { &a[..] } else { &b[..] };
        let t = Instant::now();
        tb.apply(&mqtt_vip(&tb, variant)).expect("apply");
        applied.push(t.elapsed());
        let failed = echo_all(&mut sessions, &format!("after apply {k}"));
        assert!(
            failed.is_empty(),
            "after apply {k} ({variant:?}) {} of {SESSIONS} sessions broke (balancer per CPU: {}): {:?}",
            failed.len(),
            table_counters(&tb),
            failed
                .iter()
                .map(|(id, e)| format!("{id}: {e:#}"))
                .collect::<Vec<_>>()
        );
    }
    let resets = mqtt::estab_resets(&tb, &client).expect("snmp") - resets0;
    assert_eq!(resets, 0, "connections were reset during the reloads");
    assert_eq!(
        placement(&tb, &sessions),
        on,
        "sessions moved between brokers"
    );

    // New connections follow the last variant's weights.
    const NEW: usize = 300;
    let fresh = mqtt::connect_many(&tb, 0, ip(VIP4), 31000, NEW, "n").expect("new sessions");
    let by_port = mqtt::sessions_by_real(&tb).expect("reading the reals' sockets");
    let mut count: HashMap<usize, usize> = HashMap::new();
    for s in &fresh {
        let r = *by_port.get(&s.port).expect("a new session on no real");
        *count.entry(r).or_default() += 1;
    }
    let total: u32 = b.iter().map(|&(_, w)| w).sum();
    let want = |r: usize| -> f64 {
        b.iter()
            .find(|&&(i, _)| i == r)
            .map_or(0.0, |&(_, w)| w as f64 * 100.0 / total as f64)
    };
    let shares: Vec<String> = (0..5)
        .map(|r| {
            let got = *count.get(&r).unwrap_or(&0);
            format!(
                "real{r} {got} ({:.1}%, weight share {:.1}%)",
                got as f64 * 100.0 / NEW as f64,
                want(r)
            )
        })
        .collect();
    println!(
        "e2e mqtt reload: 10 applies ({:?} .. {:?}), {SESSIONS} sessions each time, 0 broke, \
         {resets} resets; {NEW} new: {}; {:?} in all",
        applied.iter().min().expect("applies"),
        applied.iter().max().expect("applies"),
        shares.join(", "),
        t0.elapsed()
    );
    println!("  balancer per CPU: {}", table_counters(&tb));
    for r in 0..5 {
        let got = *count.get(&r).unwrap_or(&0) as f64 * 100.0 / NEW as f64;
        if want(r) == 0.0 {
            assert_eq!(
                got, 0.0,
                "real{r} has weight 0 or is out, yet got new sessions"
            );
        } else {
            assert!(
                (got - want(r)).abs() <= 10.0,
                "real{r} got {got:.1}% of new sessions, weight share {:.1}%",
                want(r)
            );
        }
    }
    // The drained real still serves the sessions it had.
    let drained = on.iter().filter(|&&r| r == 2).count();
    assert!(drained > 0, "no session on the drained real2 to check");
    let failed = echo_all(&mut sessions, "at the end");
    assert!(failed.is_empty(), "at the end: {failed:?}");
}

#[test]
fn e2e_mqtt_removing_a_real_breaks_only_its_sessions() {
    if !can_run("remove a real") {
        return;
    }
    let (tb, _brokers) = mqtt_testbed(3);

    const SESSIONS: usize = 60;
    let mut sessions =
        mqtt::connect_many(&tb, 0, ip(VIP4), 30000, SESSIONS, "s").expect("sessions");
    let failed = echo_all(&mut sessions, "before");
    assert!(failed.is_empty(), "before the removal: {failed:?}");
    let on = placement(&tb, &sessions);
    let removed = on.iter().filter(|&&r| r == 2).count();
    assert!(removed > 0, "no session on real2: {:?}", spread(&on));

    tb.apply(&mqtt_vip(&tb, &[(0, 1), (1, 1)])).expect("apply");
    let (mut reset, mut other) = (0, 0);
    for (s, &r) in sessions.iter_mut().zip(&on) {
        let res = s.echo(b"after the removal");
        if r == 2 {
            match res {
                Ok(()) => panic!("{} still works through the removed real2", s.id),
                Err(e) if mqtt::is_reset(&e) => reset += 1,
                Err(e) => {
                    println!("  {}: {e:#}", s.id);
                    other += 1
                }
            }
        } else {
            res.unwrap_or_else(|e| panic!("{} on real{r} broke: {e:#}", s.id));
        }
    }
    // The survivors keep working.
    for (s, &r) in sessions.iter_mut().zip(&on) {
        if r != 2 {
            s.echo(b"again")
                .unwrap_or_else(|e| panic!("{} on real{r} broke: {e:#}", s.id));
        }
    }
    println!(
        "e2e mqtt remove: {SESSIONS} sessions {:?}; real2 removed: its {removed} sessions \
         broke ({reset} reset, {other} otherwise), the other {} work",
        spread(&on),
        SESSIONS - removed
    );
}
