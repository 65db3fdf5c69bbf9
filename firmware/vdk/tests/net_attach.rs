//! Attach over the virtual air: who becomes leader, who attaches, who stays apart.

mod net_common;

use std::time::{Duration, Instant};

use net_common::{Net, dataset};
use ot_hil_vdk::net::{AddressKind, DISCOVERY_WINDOW, Role};

const WAIT: Duration = Duration::from_secs(2);

#[test]
fn first_node_leads_second_attaches_as_child() {
    let mut net = Net::new();
    let a = net.add(dataset());
    let b = net.add(dataset());

    net.start(a);
    assert_eq!(net.role(a), Role::Detached);
    let lead = net.wait_role(a, Role::Leader, WAIT).expect("leader");
    assert!(
        lead >= DISCOVERY_WINDOW,
        "leader only after the discovery window"
    );
    let leader_rloc = net.stack(a).rloc16();
    assert_eq!(leader_rloc & 0x03ff, 0, "router RLOC16 is id << 10");
    assert!(leader_rloc >> 10 <= 62);

    net.start(b);
    let attach = net.wait_role(b, Role::Child, WAIT).expect("child");
    println!("leader after {lead:?}, child attached after {attach:?}");
    assert!(
        attach < Duration::from_millis(200),
        "attach took {attach:?}"
    );

    let child_rloc = net.stack(b).rloc16();
    assert_eq!(
        child_rloc & 0xfc00,
        leader_rloc,
        "child RLOC16 is parent's | child id"
    );
    assert_ne!(child_rloc & 0x01ff, 0);
    assert_eq!(net.stack(b).partition_id(), net.stack(a).partition_id());
    assert_eq!(
        net.stack(b).parent(),
        Some((leader_rloc, net.stack(a).ext_addr()))
    );
    assert_eq!(
        net.stack(a).children(),
        vec![(child_rloc, net.stack(b).ext_addr())]
    );

    // Role changes arrive as events, in order.
    use ot_hil_vdk::net::NetEvent::RoleChanged;
    assert_eq!(
        net.nodes[a].events,
        vec![RoleChanged(Role::Detached), RoleChanged(Role::Leader)]
    );
    assert_eq!(
        net.nodes[b].events,
        vec![RoleChanged(Role::Detached), RoleChanged(Role::Child)]
    );
}

#[test]
fn addresses_follow_openthread_ipaddr_order() {
    let mut net = Net::formed(2);
    let prefix = "fdde:ad00:beef:0";
    let addr = |s: String| s.parse::<std::net::Ipv6Addr>().unwrap();
    let leader = net.stack(0).addresses();
    let kinds: Vec<AddressKind> = leader.iter().map(|(_, k)| *k).collect();
    assert_eq!(
        kinds,
        [
            AddressKind::Aloc,
            AddressKind::Rloc,
            AddressKind::MeshLocalEid,
            AddressKind::LinkLocal
        ]
    );
    assert_eq!(leader[0].0, addr(format!("{prefix}:0:ff:fe00:fc00")));
    let rloc = net.stack(0).rloc16();
    assert_eq!(leader[1].0, addr(format!("{prefix}:0:ff:fe00:{rloc:x}")));
    assert_eq!(
        leader[2].0.octets()[..8],
        addr(format!("{prefix}::")).octets()[..8]
    );

    // Link-local = fe80:: + extended address with the U/L bit flipped.
    let ext = net.stack(0).ext_addr();
    let mut iid = ext;
    iid[0] ^= 0x02;
    let mut ll = [0u8; 16];
    ll[0] = 0xfe;
    ll[1] = 0x80;
    ll[8..].copy_from_slice(&iid);
    assert_eq!(leader[3].0, std::net::Ipv6Addr::from(ll));

    let child = net.stack(1).addresses();
    let kinds: Vec<AddressKind> = child.iter().map(|(_, k)| *k).collect();
    assert_eq!(
        kinds,
        [
            AddressKind::Rloc,
            AddressKind::MeshLocalEid,
            AddressKind::LinkLocal
        ]
    );

    // The ML-EID is stable across a restart with the same dataset.
    let ml_eid = child[1].0;
    net.stack(1).thread_stop();
    assert_eq!(net.stack(1).role(), Role::Disabled);
    assert_eq!(net.stack(1).rloc16(), 0xfffe);
    net.stack(1).thread_start(Instant::now()).unwrap();
    net.wait_role(1, Role::Child, WAIT).expect("re-attach");
    assert_eq!(net.stack(1).addresses()[1].0, ml_eid);
}

#[test]
fn three_nodes_form_one_partition() {
    let mut net = Net::formed(3);
    let leader = net.stack(0).rloc16();
    let (c1, c2) = (net.stack(1).rloc16(), net.stack(2).rloc16());
    assert_ne!(c1, c2);
    assert_eq!(c1 & 0xfc00, leader);
    assert_eq!(c2 & 0xfc00, leader);
    assert_eq!(net.stack(0).children().len(), 2);
    assert_eq!(net.stack(1).partition_id(), net.stack(2).partition_id());
}

fn assert_separate(other: ot_hil_vdk::net::ActiveDataset) -> Net {
    let mut net = Net::new();
    let a = net.add(dataset());
    let b = net.add(other);
    net.start(a);
    net.wait_role(a, Role::Leader, WAIT).expect("a leads");
    net.start(b);
    net.wait_role(b, Role::Leader, WAIT)
        .expect("b leads its own partition instead of attaching");
    assert!(net.stack(a).children().is_empty());
    assert_ne!(net.stack(a).partition_id(), net.stack(b).partition_id());
    net
}

#[test]
fn different_network_key_does_not_attach_and_counts_bad_mic() {
    let mut other = dataset();
    other.network_key[0] ^= 0xff;
    let net = assert_separate(other);
    // b's Parent Requests reached a, on the same channel and PAN, but did not authenticate.
    assert!(net.nodes[0].stack.counters().rx_bad_mic >= 1);
}

#[test]
fn different_pan_id_does_not_attach() {
    let mut other = dataset();
    other.pan_id = 0x4321;
    let net = assert_separate(other);
    assert!(net.nodes[0].stack.counters().rx_pan_filtered >= 1);
    assert_eq!(net.nodes[0].stack.counters().rx_bad_mic, 0);
}

#[test]
fn different_channel_does_not_attach() {
    let mut other = dataset();
    other.channel = 20;
    let net = assert_separate(other);
    assert_eq!(net.nodes[0].stack.counters().rx_frames, 0);
}

#[test]
fn thread_start_needs_interface_up_and_dataset_is_locked_while_running() {
    let mut net = Net::new();
    let a = net.add(dataset());
    let s = net.stack(a);
    assert_eq!(
        s.thread_start(Instant::now()),
        Err(ot_hil_vdk::ot_error::OtError::InvalidState)
    );
    assert!(s.addresses().is_empty());
    s.ifconfig_up().unwrap();
    let kinds: Vec<AddressKind> = s.addresses().iter().map(|(_, k)| *k).collect();
    assert_eq!(kinds, [AddressKind::MeshLocalEid, AddressKind::LinkLocal]);
    s.thread_start(Instant::now()).unwrap();
    assert_eq!(
        s.set_dataset(dataset()),
        Err(ot_hil_vdk::ot_error::OtError::InvalidState)
    );
    s.ifconfig_down().unwrap();
    assert_eq!(s.role(), Role::Disabled);
    s.set_dataset(dataset()).unwrap();
}

#[test]
fn nodes_started_together_merge_into_one_partition() {
    let mut net = Net::new();
    let a = net.add(dataset());
    let b = net.add(dataset());
    let t = Instant::now();
    net.start(a);
    net.start(b);
    // Both find no parent and lead their own partition; the advertisements merge them.
    let merged = net.run_until(Duration::from_secs(3), |n| {
        let roles = [n.role(a), n.role(b)];
        roles.contains(&Role::Leader) && roles.contains(&Role::Child)
    });
    assert!(merged, "roles {:?} {:?}", net.role(a), net.role(b));
    println!("simultaneous start: one partition after {:?}", t.elapsed());
    assert_eq!(net.stack(a).partition_id(), net.stack(b).partition_id());
}
