# Query a message's status (Ruby 2.7+, standard library only)
require "net/http"

id = ENV["SMSDISPATCH_MESSAGE_ID"] || "MESSAGE_ID"
url = URI((ENV["SMSDISPATCH_URL"] || "http://127.0.0.1:8080") + "/v2.1/sms/" + id)
request = Net::HTTP::Get.new(url)
request["Application-Key"] = ENV["SMSDISPATCH_APP_KEY"] || "YOUR_APPLICATION_KEY"
request["Authorization"] = ENV["SMSDISPATCH_AUTHORIZATION"] || "YOUR_AUTHORIZATION"
response = Net::HTTP.start(url.host, url.port, use_ssl: url.scheme == "https") do |http|
  http.request(request)
end
puts response.body
