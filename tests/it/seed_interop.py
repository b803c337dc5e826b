"""The seed stack's two ends, as its documents write them, for interop tests.

poison BOOTSTRAP TOPIC 0   -- a plain client writing five bad messages: not
                              JSON, invalid UTF-8, wrong types, a missing
                              field, and one of ~1,000,000 bytes (near the
                              broker's message.max.bytes).
produce BOOTSTRAP TOPIC N  -- the seed DAG: kafka-python KafkaProducer, no key,
                              the flat JSON with a fresh uuid4 id and the API's
                              postcode as it came (a number here).
consume BOOTSTRAP TOPIC N  -- the seed Spark job's reading: every field read
                              with an all-string schema (from_json with
                              StringType); prints how many of the first N
                              messages have all 12 fields as strings.
"""
import json
import sys
import uuid

from kafka import KafkaConsumer, KafkaProducer

FIELDS = ["id", "first_name", "last_name", "gender", "address", "post_code",
          "email", "username", "dob", "registered_date", "phone", "picture"]


def produce(bootstrap, topic, n):
    producer = KafkaProducer(bootstrap_servers=bootstrap, max_block_ms=30000)
    for i in range(n):
        data = {
            "id": str(uuid.uuid4()),
            "first_name": "Jennie" if i % 2 else "Zoë",
            "last_name": "Nichols" if i % 3 else "O'Brien",
            "gender": "female",
            "address": f"{i} Valwood Pkwy, Billings, Michigan, United States",
            "post_code": 63104 + i,
            "email": f"jennie{i}@example.com",
            "username": f"yellowpeacock{i}",
            "dob": "1992-03-08T15:13:16.688Z",
            "registered_date": "2007-07-09T05:51:59.390Z",
            "phone": "(272) 790-0888",
            "picture": "https://randomuser.me/api/portraits/med/women/75.jpg",
        }
        producer.send(topic, json.dumps(data).encode("utf-8"))
    producer.flush(timeout=60)
    producer.close()
    print(n)


def poison(bootstrap, topic, _n):
    producer = KafkaProducer(bootstrap_servers=bootstrap, max_block_ms=30000,
                             max_request_size=1048576)
    good = {f: "x" for f in FIELDS}
    good["id"] = str(uuid.uuid4())
    wrong_type = dict(good, email=42)
    missing = {k: v for k, v in good.items() if k != "username"}
    huge = dict(good, first_name="a" * 999_000)
    bad = [
        b"this is not json",
        b'{"id": "\xff\xfe"}',
        json.dumps(wrong_type).encode(),
        json.dumps(missing).encode(),
        json.dumps(huge).encode(),
    ]
    for payload in bad:
        producer.send(topic, payload)
    producer.flush(timeout=60)
    producer.close()
    print(len(bad))


def consume(bootstrap, topic, n):
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap,
                             auto_offset_reset="earliest",
                             enable_auto_commit=False,
                             consumer_timeout_ms=20000)
    good = 0
    seen = 0
    for message in consumer:
        seen += 1
        row = json.loads(message.value.decode("utf-8"))
        if all(isinstance(row.get(f), str) and row.get(f) for f in FIELDS):
            uuid.UUID(row["id"])
            good += 1
        if seen >= n:
            break
    consumer.close()
    print(good)


if __name__ == "__main__":
    mode, bootstrap, topic, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    {"produce": produce, "consume": consume, "poison": poison}[mode](bootstrap, topic, n)
