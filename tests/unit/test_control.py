from schemas.control import Control, control_value, is_control, parse_control


def test_a_control_record_round_trips_with_its_fields() -> None:
    value = control_value("release_handoff", 1700000000.1234, by="agent-7")
    assert is_control(value)
    assert parse_control(value) == Control("release_handoff", 1700000000.123, {"by": "agent-7"})


def test_messages_and_ticks_are_not_control_records() -> None:
    assert parse_control(b'{"object":"whatsapp_business_account"}') is None
    assert parse_control(b'{"zapstream_tick":1.0}') is None
    assert parse_control(None) is None
