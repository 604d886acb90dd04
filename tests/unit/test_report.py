"""The HTML report: one self-contained page; what the inputs said is shown, never run."""

from stream_dec_lab.report import html_report
from stream_dec.model.catalogue import Catalogue, ClusterCard


def test_cards_escape_the_inputs_texts_and_mark_new_ids_and_changed_terms(tmp_path):
    card = ClusterCard(cluster=0, size=3, share=1.0, confidence=0.9, drift=0.01, exemplars=["<b>x</b>"],
                       terms=["fish", "reef"], texts=['<script>alert("hi")</script> a reef fish'],
                       previous_terms=["fish", "sea"])
    new = ClusterCard(cluster=1, size=0, share=0.0, confidence=0.0, drift=None, exemplars=[], new=True)
    page = html_report("run <1>", tables=["| a |\n|---|\n| <i>1</i> |"],
                       catalogue=Catalogue(version=2, parent=1, samples=3, clusters=[card, new]))
    assert "<script>alert" not in page and "&lt;script&gt;alert(&quot;hi&quot;)&lt;/script&gt;" in page
    assert "<title>run &lt;1&gt;</title>" in page and "<td>&lt;i&gt;1&lt;/i&gt;</td>" in page
    assert page.count('class="cluster-card"') == 2 and page.count('<span class="badge">new</span>') == 1
    assert '<span class="term changed">reef</span>' in page and "was: fish, sea" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch
