// Query a message's status (C#, .NET or Mono; System.Net.Http)
using System;
using System.Net.Http;

public static class Status
{
    static string Env(string name, string fallback) =>
        string.IsNullOrEmpty(Environment.GetEnvironmentVariable(name))
            ? fallback : Environment.GetEnvironmentVariable(name);

    public static void Main()
    {
        var url = Env("SMSDISPATCH_URL", "http://127.0.0.1:8080");
        var id = Env("SMSDISPATCH_MESSAGE_ID", "MESSAGE_ID");
        var request = new HttpRequestMessage(HttpMethod.Get, url + "/v2.1/sms/" + Uri.EscapeDataString(id));
        request.Headers.Add("Application-Key", Env("SMSDISPATCH_APP_KEY", "YOUR_APPLICATION_KEY"));
        request.Headers.TryAddWithoutValidation("Authorization", Env("SMSDISPATCH_AUTHORIZATION", "YOUR_AUTHORIZATION"));
        using (var http = new HttpClient())
        {
            var response = http.SendAsync(request).GetAwaiter().GetResult();
            Console.WriteLine(response.Content.ReadAsStringAsync().GetAwaiter().GetResult());
        }
    }
}
