//! Converter throughput on realistic ~500-byte bodies.
//!
//! `cargo bench -p eventyard-converter`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use eventyard_converter::{BodyFormat, Registry, SendContext};
use serde_json::json;

fn delimited() -> (String, String) {
    let names: Vec<String> = (0..30).map(|i| format!("\"f{i}\"")).collect();
    let rules = format!("fields = [{}]", names.join(", "));
    let body: Vec<String> = (0..30).map(|i| format!("value-{i:03}-abcd")).collect();
    (rules, body.join("|"))
}

fn multi_delimited() -> (String, String) {
    let rules = r#"record_delimiter = "@@"
fields = ["account", "name", "currency", "amount", "date"]"#
        .to_owned();
    let records: Vec<String> = (0..10)
        .map(|i| format!("62220{i:05}|张三{i}|CNY|{}.50|20240101", i * 100))
        .collect();
    (rules, records.join("@@"))
}

fn fixed_width(byte_mode: bool) -> (String, String) {
    let unit = if byte_mode {
        "unit = \"byte\"\nencoding = \"GBK\"\n"
    } else {
        ""
    };
    let rules = format!(
        r#"{unit}record_separator = "\n"
fields = [
    {{ name = "account", length = 10 }},
    {{ name = "name", length = 12 }},
    {{ name = "city", length = 8 }},
    {{ name = "currency", length = 3 }},
    {{ name = "amount", length = 12, align = "right", pad = "0" }},
    {{ name = "date", length = 8 }},
]"#
    );
    let record = |i: usize| {
        // GBK: 张三丰 = 6 bytes + 6 pad = 12; 北京 = 4 + 4 = 8 (the same in chars: 3+9, 2+6).
        let pad = if byte_mode { (6, 4) } else { (9, 6) };
        format!(
            "62220{i:05}张三丰{}北京{}CNY{:012}20240101",
            " ".repeat(pad.0),
            " ".repeat(pad.1),
            i * 1234
        )
    };
    let body: Vec<String> = (0..9).map(record).collect();
    (rules, body.join("\n"))
}

const ORDER: &str = r#"<order id="A-2024-000017" channel="web"><customer id="C-99812" tier="gold"><name>张三</name><email>zhang.san@example.com</email></customer><lines><line qty="2"><sku>SKU-000001</sku><price>12.50</price></line><line qty="1"><sku>SKU-000002</sku><price>7.25</price></line><line qty="5"><sku>SKU-000003</sku><price>1.10</price></line></lines><total currency="CNY">37.75</total><note>leave at the door</note></order>"#;

const ORDER_RULES: &str = r#"
fields = [
    { name = "order_id", path = "order/@id" },
    { name = "customer", path = "order/customer/@id" },
    { name = "name", path = "order/customer/name" },
    { name = "email", path = "order/customer/email" },
    { name = "total", path = "order/total" },
    { name = "lines", path = "order/lines/line", repeated = true, fields = [
        { name = "sku", path = "sku" },
        { name = "qty", path = "@qty" },
        { name = "price", path = "price" },
    ] },
]
"#;

fn receive(c: &mut Criterion) {
    let registry = Registry::with_builtins();
    let mut group = c.benchmark_group("receive");
    let (d_rules, d_body) = delimited();
    let (m_rules, m_body) = multi_delimited();
    let (fc_rules, fc_body) = fixed_width(false);
    let (fb_rules, fb_body) = fixed_width(true);
    let cases: [(&str, &str, Option<&str>, &str, BodyFormat); 6] = [
        (
            "delimited",
            "delimited",
            Some(&d_rules),
            &d_body,
            BodyFormat::Text,
        ),
        (
            "multi_delimited",
            "multi_delimited",
            Some(&m_rules),
            &m_body,
            BodyFormat::Text,
        ),
        (
            "fixed_width_chars",
            "fixed_width",
            Some(&fc_rules),
            &fc_body,
            BodyFormat::Text,
        ),
        (
            "fixed_width_gbk",
            "fixed_width",
            Some(&fb_rules),
            &fb_body,
            BodyFormat::Text,
        ),
        (
            "xml_paths",
            "xml",
            Some(ORDER_RULES),
            ORDER,
            BodyFormat::Xml,
        ),
        ("xml_leaves", "xml", None, ORDER, BodyFormat::Xml),
    ];
    for (name, id, rules, body, format) in cases {
        let converter = registry.receive_for(id, rules).unwrap();
        converter.convert(format, body).unwrap();
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new(name, body.len()), body, |b, body| {
            b.iter(|| {
                converter
                    .convert(format, std::hint::black_box(body))
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn send(c: &mut Criterion) {
    let registry = Registry::with_builtins();
    let xml = registry.send_for("xml", Some("root = \"order\"")).unwrap();
    let value = json!({
        "id": "A-2024-000017",
        "channel": "web",
        "customer": {"id": "C-99812", "tier": "gold", "name": "张三 & Co", "email": "zhang.san@example.com"},
        "line": [
            {"sku": "SKU-000001", "qty": 2, "price": "12.50"},
            {"sku": "SKU-000002", "qty": 1, "price": "7.25"},
            {"sku": "SKU-000003", "qty": 5, "price": "1.10"},
        ],
        "total": {"currency": "CNY", "amount": "37.75"},
        "note": "leave at the door <fragile>",
    });
    let ctx = SendContext::new("ORDER.PLACED", "xml");
    let len = xml.to_body(&ctx, &value).unwrap().content.len();
    let (fb_rules, _) = fixed_width(true);
    let fixed = registry.send_for("fixed_width", Some(&fb_rules)).unwrap();
    let records: Vec<_> = (0..9)
        .map(|i| json!({"account": format!("62220{i:05}"), "name": "张三丰", "city": "北京", "currency": "CNY", "amount": i * 1234, "date": "20240101"}))
        .collect();
    let fixed_value = json!(records);
    let fixed_len = fixed.to_body(&ctx, &fixed_value).unwrap().content.len();

    let mut group = c.benchmark_group("send");
    group.throughput(Throughput::Bytes(len as u64));
    group.bench_function(BenchmarkId::new("xml", len), |b| {
        b.iter(|| xml.to_body(&ctx, std::hint::black_box(&value)).unwrap())
    });
    group.throughput(Throughput::Bytes(fixed_len as u64));
    group.bench_function(BenchmarkId::new("fixed_width_gbk", fixed_len), |b| {
        b.iter(|| {
            fixed
                .to_body(&ctx, std::hint::black_box(&fixed_value))
                .unwrap()
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = receive, send
}
criterion_main!(benches);
