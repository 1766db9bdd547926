"""Fleet: many hosts into NATS JetStream, one central collector.

The agent side (:mod:`.exporter`) batches Events, alerts and process records,
compresses each batch into one JetStream message on ``probewatch.<host>.<kind>``
(:mod:`.wire`), and keeps it until the server's PubAck, spilling to disk
(:mod:`.spill`) while the server cannot take it. The central side (:mod:`.collector`)
reads the stream through a durable consumer into one capture store (:mod:`.store`),
deduplicated by (host, boot id, batch sequence), and can run the detection engine on
the events of agents that run no rules. :mod:`.admin` creates the stream and the
per-host credentials (``probewatch fleet init``).

Importing this package does not import nats-py; the modules that need it import it
inside their functions.
"""
