// Send to many recipients (C#, .NET or Mono; System.Net.Http)
using System;
using System.Net.Http;
using System.Text;

public static class SendMany
{
    static string Env(string name, string fallback) =>
        string.IsNullOrEmpty(Environment.GetEnvironmentVariable(name))
            ? fallback : Environment.GetEnvironmentVariable(name);

    public static void Main()
    {
        var url = Env("SMSDISPATCH_URL", "http://127.0.0.1:8080");
        var body = "{\"sender\":\"SHOP\",\"message\":\"Spring sale: 20% off today\",\"phoneNumbers\":[\"+48111222333\",\"+48111222334\",\"+48111222335\"]}";
        var request = new HttpRequestMessage(HttpMethod.Post, url + "/v2.1/sms")
        {
            Content = new StringContent(body, Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("Application-Key", Env("SMSDISPATCH_APP_KEY", "YOUR_APPLICATION_KEY"));
        request.Headers.TryAddWithoutValidation("Authorization", Env("SMSDISPATCH_AUTHORIZATION", "YOUR_AUTHORIZATION"));
        using (var http = new HttpClient())
        {
            var response = http.SendAsync(request).GetAwaiter().GetResult();
            Console.WriteLine(response.Content.ReadAsStringAsync().GetAwaiter().GetResult());
        }
    }
}
