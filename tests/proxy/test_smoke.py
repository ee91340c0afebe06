from tests.proxy.conftest import ProxyFactory


async def test_get(make_proxy: ProxyFactory) -> None:
    p = await make_proxy()
    async with p.session.get(p.url + "/download?size=100") as r:
        assert r.status == 200
        assert len(await r.read()) == 100
