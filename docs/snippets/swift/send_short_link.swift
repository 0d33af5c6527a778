// Send with tracked short links (Swift 5.5+, Foundation)
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

let env = ProcessInfo.processInfo.environment
let url = URL(string: (env["SMSDISPATCH_URL"] ?? "http://127.0.0.1:8080") + "/v2.1/sms")!
var request = URLRequest(url: url)
request.httpMethod = "POST"
request.setValue("application/json", forHTTPHeaderField: "Content-Type")
request.setValue(env["SMSDISPATCH_APP_KEY"] ?? "YOUR_APPLICATION_KEY", forHTTPHeaderField: "Application-Key")
request.setValue(env["SMSDISPATCH_AUTHORIZATION"] ?? "YOUR_AUTHORIZATION", forHTTPHeaderField: "Authorization")
request.httpBody = "{\"sender\":\"SHOP\",\"message\":\"Spring sale: 20% off today at https://shop.example.com/spring?utm_source=sms\",\"phoneNumbers\":[\"+48111222333\",\"+48111222334\"],\"shortLink\":true}".data(using: .utf8)
let done = DispatchSemaphore(value: 0)
URLSession.shared.dataTask(with: request) { data, _, error in
    print(data.map { String(decoding: $0, as: UTF8.self) } ?? "\(error!)")
    done.signal()
}.resume()
done.wait()
