//! The AF_XDP listeners in `/metrics`: one info gauge per interface (mode and bind) and the
//! per-queue counters, from the status the server reads off the running listeners. Rendered
//! here rather than in `dns` (which knows nothing of metrics) or `metrics` (which knows no
//! other module).

use crate::dns::xdp::{XdpQueueStatus, XdpStatus};
use crate::metrics::{Gauges, Text};

/// The AF_XDP listeners as gauge and counter families.
pub(crate) struct XdpGauges<'a>(pub(crate) &'a [XdpStatus]);

impl Gauges for XdpGauges<'_> {
    fn render(&self, o: &mut Text) {
        let list = self.0;
        o.header(
            "gslbd_xdp_info",
            "AF_XDP listeners: mode native|generic, bind zerocopy|copy.",
            "gauge",
        );
        for s in list {
            let queues = s.queues.len().to_string();
            o.sample(
                "gslbd_xdp_info",
                &[
                    ("interface", &s.interface),
                    ("mode", s.mode),
                    ("bind", s.bind),
                    ("queues", &queues),
                ],
                1,
            );
        }
        type Field = fn(&XdpQueueStatus) -> u64;
        let counters: [(&str, &str, Field); 5] = [
            (
                "gslbd_xdp_matched_total",
                "Packets the XDP program sent to the AF_XDP socket.",
                |q| q.matched,
            ),
            (
                "gslbd_xdp_passed_total",
                "Packets the XDP program passed to the kernel.",
                |q| q.passed,
            ),
            (
                "gslbd_xdp_received_total",
                "Packets read from the AF_XDP socket.",
                |q| q.received,
            ),
            (
                "gslbd_xdp_answered_total",
                "Answers sent over AF_XDP.",
                |q| q.answered,
            ),
            (
                "gslbd_xdp_dropped_total",
                "Packets dropped on the AF_XDP path (by gslbd or by the kernel for want of room).",
                |q| q.dropped,
            ),
        ];
        for (name, help, get) in counters {
            o.header(name, help, "counter");
            for s in list {
                for q in &s.queues {
                    let queue = q.queue.to_string();
                    o.sample(
                        name,
                        &[("interface", &s.interface), ("queue", &queue)],
                        get(q),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text() {
        let s = XdpStatus {
            interface: "veth0".into(),
            ifindex: 3,
            ports: vec![53],
            mode: "native",
            bind: "copy",
            queues: vec![XdpQueueStatus {
                queue: 0,
                cpu: Some(1),
                matched: 10,
                passed: 4,
                received: 10,
                answered: 9,
                dropped: 1,
            }],
        };
        let list = [s];
        let out = crate::metrics::Metrics::new().render(&crate::metrics::Extra {
            xdp: Some(&XdpGauges(&list)),
            ..Default::default()
        });
        assert!(out.contains(
            "gslbd_xdp_info{interface=\"veth0\",mode=\"native\",bind=\"copy\",queues=\"1\"} 1"
        ));
        assert!(out.contains("gslbd_xdp_answered_total{interface=\"veth0\",queue=\"0\"} 9"));
        assert!(out.contains("gslbd_xdp_passed_total{interface=\"veth0\",queue=\"0\"} 4"));
    }
}
