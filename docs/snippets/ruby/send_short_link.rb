# Send with tracked short links (Ruby 2.7+, standard library only)
require "json"
require "net/http"

url = URI((ENV["SMSDISPATCH_URL"] || "http://127.0.0.1:8080") + "/v2.1/sms")
body = {
  "sender": "SHOP",
  "message": "Spring sale: 20% off today at https://shop.example.com/spring?utm_source=sms",
  "phoneNumbers": ["+48111222333", "+48111222334"],
  "shortLink": true,
}
request = Net::HTTP::Post.new(url, "Content-Type" => "application/json")
request["Application-Key"] = ENV["SMSDISPATCH_APP_KEY"] || "YOUR_APPLICATION_KEY"
request["Authorization"] = ENV["SMSDISPATCH_AUTHORIZATION"] || "YOUR_AUTHORIZATION"
request.body = body.to_json
response = Net::HTTP.start(url.host, url.port, use_ssl: url.scheme == "https") do |http|
  http.request(request)
end
puts response.body
