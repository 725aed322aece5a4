from pykv.engine.identity import cluster_id_for, default_member, member_id_for


def test_default_member_has_etcds_well_known_ids():
    member_id, cluster_id = default_member()
    assert f"{member_id:x}" == "8e9e05c52164694d"
    assert f"{cluster_id:x}" == "cdf818194e3a8c32"


def test_member_id_ignores_the_order_of_peer_urls():
    a = member_id_for(["http://10.0.0.2:2380", "http://10.0.0.1:2380"], "tok")
    b = member_id_for(["http://10.0.0.1:2380", "http://10.0.0.2:2380"], "tok")
    assert a == b != member_id_for(["http://10.0.0.1:2380"], "tok")
    assert cluster_id_for([a, 5]) == cluster_id_for([5, a])
