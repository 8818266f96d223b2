"""Embedded brokers for development and tests: Tansu (`tansu`) and Apache Kafka (`kafka`).

`make_broker` (`factory`) picks one; both follow `EmbeddedBroker` (`embedded`).
The product never imports this package: it is given a bootstrap address.
"""
