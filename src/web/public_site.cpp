#include "web/public_site.hpp"

#include <fstream>
#include <regex>
#include <sstream>

namespace kg::web {
namespace {

// A plain page that plays where HLS plays natively (Safari, iOS, Android) and lists the streams;
// a JavaScript HLS player for desktop browsers is the next step of the public side.
constexpr const char* kPage = R"(<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>明厨亮灶 Bright kitchen</title>
<style>body{font-family:sans-serif;margin:0 auto;max-width:720px;padding:12px}video{width:100%;background:#000}
.cam{margin:12px 0}.off{color:#a00}</style></head>
<body><h1 id="site">明厨亮灶</h1><div id="cams"></div><div id="sensors"></div>
<script>
fetch('/public/status').then(r=>r.json()).then(s=>{
  document.getElementById('site').textContent=s.site;
  const cams=document.getElementById('cams');
  for(const c of s.cameras){
    const d=document.createElement('div');d.className='cam';
    d.innerHTML='<h2></h2><video controls muted autoplay playsinline></video><p></p>';
    d.querySelector('h2').textContent=c.name;
    d.querySelector('video').src='/live/'+encodeURIComponent(c.id)+'/index.m3u8';
    const p=d.querySelector('p');p.textContent=c.online?'':'offline';p.className=c.online?'':'off';
    cams.appendChild(d);
  }
  const t=document.getElementById('sensors');
  for(const x of s.sensors){const p=document.createElement('p');p.textContent=x.name+': '+(x.value===null?'-':x.value+' '+x.unit);t.appendChild(p);}
});
</script></body></html>
)";

Response file(const Request& req, const std::string& path, const char* type) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return text_response(req, http::status::not_found, "not found\n");
    std::ostringstream data;
    data << in.rdbuf();
    return text_response(req, http::status::ok, data.str(), type);
}

}  // namespace

Handler public_site(const PublicView& view, std::shared_ptr<spdlog::logger> log) {
    return [&view, log](const Request& req, const std::string&) -> Response {
        if (req.method() != http::verb::get && req.method() != http::verb::head) {
            return text_response(req, http::status::method_not_allowed, "only GET\n");
        }
        const std::string target(req.target());
        const std::string path = target.substr(0, target.find('?'));
        if (path == "/") return text_response(req, http::status::ok, kPage, "text/html; charset=utf-8");
        if (path == "/public/status") {
            return text_response(req, http::status::ok, view.public_status().dump() + "\n",
                                 "application/json");
        }
        // Names are matched whole: a camera id, then the playlist or a segment the muxer names.
        static const std::regex live(
            R"(^/live/([A-Za-z0-9_-]{1,64})/(index\.m3u8|g[0-9]{1,6}-[0-9]{5,9}\.ts)$)");
        std::smatch m;
        if (std::regex_match(path, m, live)) {
            const auto folder = view.public_hls_folder(m[1]);
            if (!folder) return text_response(req, http::status::not_found, "not found\n");
            const bool playlist = m[2] == "index.m3u8";
            return file(req, *folder + "/" + std::string(m[2]),
                        playlist ? "application/vnd.apple.mpegurl" : "video/mp2t");
        }
        return text_response(req, http::status::not_found, "not found\n");
    };
}

}  // namespace kg::web
