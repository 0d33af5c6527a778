// Look a number up (C#, .NET or Mono; System.Net.Http and System.Runtime.Serialization)
using System;
using System.IO;
using System.Net.Http;
using System.Runtime.Serialization;
using System.Runtime.Serialization.Json;
using System.Text;
using System.Xml;

// The look-up answer, typed as docs/lookup.md documents it.
[DataContract]
public class Network
{
    [DataMember(Name = "mcc")] public string Mcc;
    [DataMember(Name = "mnc")] public string Mnc;
    [DataMember(Name = "name")] public string Name;
}

[DataContract]
public class Lookup
{
    [DataMember(Name = "phoneNumber")] public string PhoneNumber;
    [DataMember(Name = "valid")] public bool Valid;
    [DataMember(Name = "country")] public string Country;
    [DataMember(Name = "network")] public Network Network;
    [DataMember(Name = "ported")] public bool? Ported;
    [DataMember(Name = "reachable")] public bool? Reachable;
    [DataMember(Name = "cached")] public bool Cached;
    [DataMember(Name = "lookupTime")] public long LookupTime;
}

[DataContract]
public class LookupError
{
    [DataMember(Name = "code")] public string Code;
    [DataMember(Name = "message")] public string Message;
}

[DataContract]
public class LookupResponse
{
    [DataMember(Name = "data")] public Lookup[] Data;
    [DataMember(Name = "errors")] public LookupError[] Errors;
}

public static class LookupNumber
{
    static string Env(string name, string fallback) =>
        string.IsNullOrEmpty(Environment.GetEnvironmentVariable(name))
            ? fallback : Environment.GetEnvironmentVariable(name);

    // DataContractJsonSerializer reads "123" into a long and 5 into a string; System.Text.Json,
    // which the original's .NET sample uses, refuses both. Check the JSON types first.
    static T Decode<T>(string json)
    {
        var bytes = Encoding.UTF8.GetBytes(json);
        var doc = new XmlDocument();
        using (var reader = JsonReaderWriterFactory.CreateJsonReader(bytes, XmlDictionaryReaderQuotas.Max))
        {
            doc.Load(reader);
        }
        CheckTypes(doc.DocumentElement, typeof(T));
        return (T)new DataContractJsonSerializer(typeof(T)).ReadObject(new MemoryStream(bytes));
    }

    static void CheckTypes(XmlElement node, Type type)
    {
        if (type.IsArray)
        {
            foreach (XmlNode item in node.ChildNodes)
            {
                if (item is XmlElement element) CheckTypes(element, type.GetElementType());
            }
            return;
        }
        foreach (var field in type.GetFields())
        {
            var member = (DataMemberAttribute)Attribute.GetCustomAttribute(field, typeof(DataMemberAttribute));
            var child = member == null ? null : node[member.Name ?? field.Name];
            if (child == null) continue;
            var got = child.GetAttribute("type");
            var nullable = Nullable.GetUnderlyingType(field.FieldType);
            var t = nullable ?? field.FieldType;
            if (got == "null" && (nullable != null || !t.IsValueType)) continue;
            var want = t == typeof(string) ? "string" : t == typeof(bool) ? "boolean"
                : t.IsPrimitive ? "number" : t.IsArray ? "array" : "object";
            if (got != want)
            {
                throw new SerializationException(member.Name + ": the model has " + want + ", the answer " + got);
            }
            if (want == "array" || want == "object") CheckTypes(child, t);
        }
    }

    public static void Main()
    {
        var url = Env("SMSDISPATCH_URL", "http://127.0.0.1:8080");
        var body = "{\"phone\":\"+48500100200\"}";
        var request = new HttpRequestMessage(HttpMethod.Post, url + "/v2.1/sms/hlr")
        {
            Content = new StringContent(body, Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("Application-Key", Env("SMSDISPATCH_APP_KEY", "YOUR_APPLICATION_KEY"));
        request.Headers.TryAddWithoutValidation("Authorization", Env("SMSDISPATCH_AUTHORIZATION", "YOUR_AUTHORIZATION"));
        using (var http = new HttpClient())
        {
            var response = http.SendAsync(request).GetAwaiter().GetResult();
            var json = response.Content.ReadAsStringAsync().GetAwaiter().GetResult();
            var answer = Decode<LookupResponse>(json);
            Console.WriteLine(json);
            foreach (var n in answer.Data)
            {
                Console.Error.WriteLine(n.PhoneNumber + ": valid " + n.Valid + ", cached " + n.Cached);
            }
            foreach (var error in answer.Errors)
            {
                Console.Error.WriteLine("refused: " + error.Code + ": " + error.Message);
            }
        }
    }
}
