"""DNS answers rendered the way dig prints them (onebox.digtext), pure."""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.rrset

from onebox.digtext import dig_text


def answer(*addresses: str, rcode: int = dns.rcode.NOERROR) -> dns.message.Message:
    query = dns.message.make_query("edge.cdn.example.", "A", use_edns=0)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    if addresses:
        response.answer.append(
            dns.rrset.from_text("edge.cdn.example.", 20, "IN", "A", *addresses)
        )
    return response


def render(msg: dns.message.Message) -> str:
    return dig_text(msg, server="127.0.0.1", port=5300, query="edge.cdn.example.",
                    rdtype="A", elapsed_ms=2.4)


def test_the_header_counts_records_not_rrsets_and_the_opt_record_as_additional() -> None:
    text = render(answer("127.0.0.10", "127.0.0.11"))
    assert ";; flags: qr rd; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1" in text
    assert "status: NOERROR" in text


def test_records_are_tab_separated_like_dig() -> None:
    lines = render(answer("127.0.0.10", "127.0.0.11")).splitlines()
    assert ";edge.cdn.example.\tIN\tA" in lines
    assert "edge.cdn.example.\t20\tIN\tA\t127.0.0.10" in lines
    assert "edge.cdn.example.\t20\tIN\tA\t127.0.0.11" in lines
    assert ";; SERVER: 127.0.0.1#5300(127.0.0.1) (UDP)" in lines
    assert ";; Query time: 2 msec" in lines


def test_an_error_answer_shows_its_status_and_no_answer_section() -> None:
    text = render(answer(rcode=dns.rcode.REFUSED))
    assert "status: REFUSED" in text and ";; ANSWER SECTION:" not in text
