from tests.support.proxy import ProxyFactory


async def test_get(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    async with p.session.get(p.url + "/download?size=100") as r:
        assert r.status == 200
        assert len(await r.read()) == 100


async def test_the_engine_asked_for_serves(make_proxy: ProxyFactory, proxy_engine: str) -> None:
    p = await make_proxy()
    component = p.component
    assert component.engine == proxy_engine
    async with p.session.get(p.url + "/download?size=10") as r:
        assert r.status == 200
        await r.read()
        if proxy_engine == "lean":  # the keep-alive connection is a lean one
            assert component.lean is not None
            assert len(component.lean.connections) == 1
        else:
            assert component.lean is None
